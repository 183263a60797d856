"""Sign in with Sp00ky: the MCP authorization spec (OAuth 2.1) beside `mcp_live_` tokens.

The server is both the resource server (RFC 9728 metadata, Bearer challenges) and, with
`--public-url` as its issuer, the authorization server (RFC 8414 metadata, the authorization
code grant with PKCE, client ID metadata documents and RFC 7591 registration, refresh token
rotation, RFC 7009 revocation).  An access token it issues is an ordinary `mcp_live_` token
bound to its grant and to this resource.
"""
