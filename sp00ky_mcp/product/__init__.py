"""The Sp00ky product on top of the engine: tokens, scopes, accounts, the control plane's
rules (`cloud`), its tools, and the storage port with its backends (`store`)."""
