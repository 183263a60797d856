"""The HTTP side of sign-in: the metadata documents, the authorization endpoint with its
sign-in and consent pages, and the token, registration and revocation endpoints.

Errors before the redirect URI is known to be the client's are shown on a page, never sent to
the URI given (no open redirect, OAuth 2.1 section 4.1.2.1); after it, they go back to the
client.  The endpoints a program calls answer JSON with `Cache-Control: no-store`, and allow
any origin (browser-based clients), without credentials.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import orjson

from ...engine.errors import HttpError
from ...engine.forwarded import ClientAddress, limited
from ...engine.h1 import HttpRequest, HttpResponse, Response
from ...engine.quotas import Quotas
from .. import scopes as catalogue
from ..accounts import Accounts, Clock
from ..names import folded
from ..store import StoreUnavailable
from ..store.repos.oauth import OAuthClient
from . import metadata, pages, passwords, pkce, redirects
from .authority import Authority, OAuthError
from .clients import ClientRefused, Clients, authenticated
from .signed import Signer

Route = Callable[[HttpRequest], Awaitable[Response]]
FORM = "application/x-www-form-urlencoded"
# How long a sign-in page may be answered, and how long a browser stays signed in.
REQUEST_SECONDS = 600.0
SIGNED_IN_SECONDS = 3600.0
# A browser that signed in to an account is known to it for this long: its attempts for that
# email skip the email's from-everywhere allowance, so guesses spread over many addresses
# cannot lock the user out of the browser they use (OWASP's "device cookies").
KNOWN_BROWSER_SECONDS = 90 * 86400.0
# Sign-in attempts: a peer's over every email, twenty at once, then one every ten seconds; an
# email's from one peer, five at once, then one a minute; and an email's from everywhere,
# thirty at once, then one every twenty seconds (so that a guesser spread over many addresses
# is slowed too, while locking a user out takes many addresses, not one).
PEER_BURST, PEER_RATE = 20.0, 1 / 10
EMAIL_BURST, EMAIL_RATE = 5.0, 1 / 60
EVERYWHERE_BURST, EVERYWHERE_RATE = 30.0, 1 / 20
# RFC 5321 section 4.5.3.1: no address is longer.
LONGEST_EMAIL = 254
# Registrations from one peer: ten at once, then one every six minutes.
REGISTER_BURST, REGISTER_RATE = 10.0, 1 / 360
MOST_FIELDS = 64


class BadRequest(Exception):
    """A request to a page that cannot be answered: shown on a page, or as JSON."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True, slots=True)
class Posted:
    """A sign-in or consent form posted back, verified: its request, fields and client, and
    the authorization request it answers (signed, and opened)."""

    request: HttpRequest
    form: dict[str, list[str]]
    client: OAuthClient
    signed: str
    pending: dict[str, Any]

    def field(self, name: str) -> str:
        return self.form.get(name, [""])[0]


class OAuthWeb:
    def __init__(
        self,
        accounts: Accounts,
        clients: Clients,
        authority: Authority,
        signer: Signer,
        quotas: Quotas,
        endpoint: str,
        clock: Clock = time.time,
        addresses: ClientAddress | None = None,
    ) -> None:
        self.accounts, self.clients, self.authority = accounts, clients, authority
        self.signer, self.quotas, self.clock = signer, quotas, clock
        self.addresses = addresses or ClientAddress()
        self.routes: dict[str, dict[str, Route]] = {
            metadata.PRM_PATH + endpoint: {"GET": self._resource},
            metadata.PRM_PATH: {"GET": self._resource},
            metadata.AS_PATH: {"GET": self._server},
            metadata.AUTHORIZE_PATH: {"GET": self._authorize, "POST": self._answer},
            metadata.TOKEN_PATH: {"POST": self._token},
            metadata.REGISTER_PATH: {"POST": self._register},
            metadata.REVOKE_PATH: {"POST": self._revoke},
        }

    @property
    def urls(self) -> metadata.Urls:
        return self.authority.urls

    @property
    def secure(self) -> bool:
        return self.urls.issuer.startswith("https://")

    @property
    def signin_cookie(self) -> str:
        # __Host-: only ever sent back to this host, over https, for every path.
        return ("__Host-" if self.secure else "") + "sp00ky-signin"

    @property
    def nonce_cookie(self) -> str:
        return ("__Host-" if self.secure else "") + "sp00ky-nonce"

    @property
    def known_cookie(self) -> str:
        return ("__Host-" if self.secure else "") + "sp00ky-known"

    async def __call__(self, request: HttpRequest) -> Response | None:
        methods = self.routes.get(request.path)
        if methods is None:
            return None
        if request.method == "OPTIONS":
            return _preflight(methods)
        route = methods.get("GET" if request.method == "HEAD" else request.method)
        if route is None:
            allowed = ", ".join(sorted(methods))
            raise HttpError(405, f"Method not allowed: use {allowed}.", (("allow", allowed),))
        try:
            return await route(request)
        except StoreUnavailable as exc:
            raise HttpError(503, exc.message, (("retry-after", "1"),)) from None
        except BadRequest as exc:  # a page's request: the person reads it
            return _html(exc.status, pages.failure("This sign-in cannot go on", exc.message))
        except OAuthError as exc:  # a program's request: it reads the error code
            return _json(exc.status, exc.body())

    # --- metadata --------------------------------------------------------------------------

    async def _resource(self, request: HttpRequest) -> Response:
        return _json(200, metadata.protected_resource(self.urls))

    async def _server(self, request: HttpRequest) -> Response:
        return _json(200, metadata.authorization_server(self.urls))

    # --- the authorization endpoint --------------------------------------------------------

    async def _authorize(self, request: HttpRequest) -> Response:
        try:
            params = _query(request.query)
            client, redirect_uri = await self._asking(params, self._address(request))
        except BadRequest as exc:
            return _html(exc.status, pages.failure("This sign-in cannot go on", exc.message))
        try:
            pending = self._pending(params, client, redirect_uri)
        except OAuthError as exc:
            # Not sent back at once: anyone may register a client, so an automatic redirect
            # on a request no user has seen would make this server an open redirector
            # (RFC 9700 section 4.11.2).  The user is shown why, and may take it back.
            back = self._location(redirect_uri, params.get("state"), exc.error, exc.message)
            body = pages.refused(exc.message, back, redirects.destination(redirect_uri))
            return _html(400, body)
        signed = self.signer.sign("authorize", pending, REQUEST_SECONDS)
        return await self._page(request, client, signed, pending)

    async def _asking(self, params: dict[str, str], asker: str) -> tuple[OAuthClient, str]:
        """The client and its redirect URI, or BadRequest: until both are known good, nothing
        is sent to the URI given."""
        client_id = params.get("client_id")
        if not client_id:
            raise BadRequest("The request names no client_id; start again from your client.")
        try:
            client = await self.clients.find(client_id, asker)
        except ClientRefused as exc:
            raise BadRequest(f"The client cannot be used: {exc.message}") from None
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None and len(client.redirect_uris) == 1:
            redirect_uri = client.redirect_uris[0]
        if redirect_uri is None or not redirects.matches(client.redirect_uris, redirect_uri):
            raise BadRequest(
                "The redirect_uri is not one this client registered, so this server will not "
                "send you there; start again from your client."
            )
        return client, redirect_uri

    def _pending(
        self, params: dict[str, str], client: OAuthClient, redirect_uri: str
    ) -> dict[str, Any]:
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be code.")
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not pkce.valid_challenge(challenge):
            raise OAuthError(
                "invalid_request", "PKCE is required: send a code_challenge with method S256."
            )
        self.authority.check_resource(params.get("resource"))
        return {
            "c": client.id,
            "r": redirect_uri,
            "rs": "redirect_uri" in params,
            "s": params.get("state"),
            "ch": challenge,
            "sc": sorted(_asked(params.get("scope"))),
        }

    async def _page(
        self,
        request: HttpRequest,
        client: OAuthClient,
        signed: str,
        pending: dict[str, Any],
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        nonce = _cookies(request).get(self.nonce_cookie) or secrets.token_urlsafe(24)
        csrf = self.signer.csrf(nonce, signed)
        who = self.signer.open("signin", _cookies(request).get(self.signin_cookie))
        if who is None or error is not None:
            body = pages.signin(_asker(client, pending), signed, csrf, error=error)
        else:
            body = _consent_page(who["e"], client, signed, csrf, pending)
        return _html(status, body, [self._cookie(self.nonce_cookie, nonce, REQUEST_SECONDS)])

    async def _answer(self, request: HttpRequest) -> Response:
        """A sign-in or consent form, posted back."""
        try:
            form = _page_form(request)
            signed = _one(form, "request")
            pending = self.signer.open("authorize", signed)
            if pending is None:
                raise BadRequest(
                    "This page expired or was changed; start the sign-in again from your client."
                )
            nonce = _cookies(request).get(self.nonce_cookie)
            if not self.signer.csrf_holds(nonce, signed, form.get("csrf", [None])[0]):
                raise BadRequest(
                    "This form could not be verified as sent from this page in this browser; "
                    "start the sign-in again from your client.",
                    403,
                )
            client = await self.clients.find(pending["c"], self._address(request))
        except BadRequest as exc:
            return _html(exc.status, pages.failure("This sign-in cannot go on", exc.message))
        except ClientRefused as exc:
            return _html(400, pages.failure("This sign-in cannot go on", exc.message))
        posted = Posted(request, form, client, signed, pending)
        if posted.field("step") == "signin":
            return await self._signin(posted)
        return await self._consent(posted)

    async def _again(self, posted: Posted, message: str, status: int) -> Response:
        """The page the form came from, shown again with what went wrong."""
        return await self._page(
            posted.request, posted.client, posted.signed, posted.pending, message, status
        )

    async def _signin(self, posted: Posted) -> Response:
        email, password = posted.field("email").strip(), posted.field("password")
        if len(email) > LONGEST_EMAIL:
            message = f"An email address has at most {LONGEST_EMAIL} characters."
            return await self._again(posted, message, 400)
        if passwords.busy():  # before the attempt is counted: the user did not get to try
            return await self._busy(posted)
        wait = await self._attempt(posted.request, email)
        if wait:
            minutes = max(1, round(wait / 60))
            message = f"Too many sign-in attempts; try again in {minutes} minute(s)."
            return await self._again(posted, message, 429)
        user = await self.accounts.user_by_email(email) if "@" in email else None
        stored = None if user is None else await self.accounts.store.reads.oauth.password(user.id)
        # Always hash, so an unknown email takes as long as a wrong password.
        try:
            right = await passwords.verify_in_worker(password, stored)
        except passwords.HashingBusy:
            return await self._busy(posted)
        if user is None or not right:
            return await self._again(posted, "The email or password is not right.", 403)
        who = self.signer.sign("signin", {"u": user.id, "e": user.email}, SIGNED_IN_SECONDS)
        signed_in = self._cookie(self.signin_cookie, who, SIGNED_IN_SECONDS)
        known = self.signer.sign("known", {"e": folded(email)}, KNOWN_BROWSER_SECONDS)
        nonce = _cookies(posted.request).get(self.nonce_cookie) or ""
        csrf = self.signer.csrf(nonce, posted.signed)
        body = _consent_page(user.email, posted.client, posted.signed, csrf, posted.pending)
        return _html(
            200, body, [signed_in, self._cookie(self.known_cookie, known, KNOWN_BROWSER_SECONDS)]
        )

    async def _busy(self, posted: Posted) -> Response:
        message = "Too many sign-ins at once; try again in a moment."
        return await self._again(posted, message, 503)

    async def _attempt(self, request: HttpRequest, email: str) -> float:
        """Takes one sign-in attempt from the peer's allowance, then the email's: the seconds
        to wait when one is spent, else 0.  A peer past its allowance takes nothing from the
        email's, so it cannot spend another user's attempts for them; a browser that signed
        in to this email before takes nothing from its from-everywhere allowance."""
        now, peer, who = self.clock(), self._address(request), folded(email)
        limits = [
            ("signin-from:" + peer, PEER_RATE, PEER_BURST),
            (f"signin-pair:{peer} {who}", EMAIL_RATE, EMAIL_BURST),
        ]
        if not self._known(request, who):
            limits.append(("signin-email:" + who, EVERYWHERE_RATE, EVERYWHERE_BURST))
        for key, rate, burst in limits:
            wait = await self.quotas.throttle(key, now, rate, burst)
            if wait:
                return wait
        return 0.0

    def _known(self, request: HttpRequest, who: str) -> bool:
        known = self.signer.open("known", _cookies(request).get(self.known_cookie))
        return known is not None and known.get("e") == who

    def _address(self, request: HttpRequest) -> str:
        """Whom per-address limits count against: the client, seen through trusted proxies."""
        peer = getattr(request.channel, "peer", "") or "-"
        return limited(self.addresses.of(peer, request.header("x-forwarded-for")))

    async def _consent(self, posted: Posted) -> Response:
        pending = posted.pending
        who = self.signer.open("signin", _cookies(posted.request).get(self.signin_cookie))
        if who is None:
            return await self._again(posted, "Your sign-in expired; sign in again.", 401)
        if posted.field("decision") != "allow":
            return self._back(
                self._location(pending["r"], pending["s"], "access_denied", "The user said no.")
            )
        ticked = set(posted.form.get("scope", []))
        chosen = tuple(s for s in catalogue.CONCRETE if s in ticked)
        if not chosen:
            message = "The user allowed no scope."
            return self._back(self._location(pending["r"], pending["s"], "access_denied", message))
        # A code remembers the redirect URI only when the request sent one, which the token
        # request must then repeat (OAuth 2.1 section 4.1.3).
        sent = pending["r"] if pending.get("rs", True) else ""
        code = await self.authority.grant_code(who["u"], posted.client, chosen, sent, pending["ch"])
        return self._back(self._location(pending["r"], pending["s"], code=code))

    @staticmethod
    def _back(location: str) -> Response:
        """The browser sent back to the client, to `location` (from `_location`)."""
        headers = [(b"location", location.encode()), *_page_headers()]
        return HttpResponse(303, headers)

    def _location(
        self,
        redirect_uri: str,
        state: str | None,
        error: str | None = None,
        description: str | None = None,
        code: str | None = None,
    ) -> str:
        """Where the client hears the answer (RFC 6749 section 4.1.2, with `iss`: RFC 9207)."""
        answer: dict[str, str] = {"code": code} if code else {}
        if error is not None:
            answer |= {"error": error, "error_description": description or error}
        if state is not None:
            answer["state"] = state
        answer["iss"] = self.urls.issuer
        return _joined(redirect_uri, urlencode(answer))

    def _cookie(self, name: str, value: str, seconds: float) -> tuple[bytes, bytes]:
        secure = "; Secure" if self.secure else ""
        text = f"{name}={value}; Path=/; Max-Age={int(seconds)}; HttpOnly; SameSite=Lax{secure}"
        return b"set-cookie", text.encode()

    # --- the endpoints a client program calls ------------------------------------------------

    async def _token(self, request: HttpRequest) -> Response:
        try:
            form = _single(_form(request))
            client = await self._client(request, form)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                answer = await self.authority.redeem(
                    client,
                    _need(form, "code"),
                    form.get("redirect_uri"),
                    form.get("code_verifier"),
                    form.get("resource"),
                )
            elif grant_type == "refresh_token":
                answer = await self.authority.refresh(
                    client, _need(form, "refresh_token"), form.get("scope"), form.get("resource")
                )
            else:
                raise OAuthError(
                    "unsupported_grant_type",
                    "grant_type must be authorization_code or refresh_token.",
                )
        except OAuthError as exc:
            return _json(exc.status, exc.body())
        return _json(200, answer)

    async def _client(self, request: HttpRequest, form: dict[str, str]) -> OAuthClient:
        """The client the request comes from, authenticated (RFC 6749 section 2.3.1)."""
        client_id, secret = _basic(request.header("authorization"))
        if client_id is None:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        if not client_id:
            raise OAuthError("invalid_client", "Name the client: send client_id.", 401)
        try:
            # No fetch for a document never stored: that client holds no code or token yet.
            client = await self.clients.find(client_id, self._address(request), new=False)
        except ClientRefused as exc:
            raise OAuthError("invalid_client", exc.message, 401) from None
        if not authenticated(client, secret):
            raise OAuthError("invalid_client", "The client secret is missing or wrong.", 401)
        return client

    async def _register(self, request: HttpRequest) -> Response:
        if _media_type(request) != "application/json":
            # RFC 7591 section 3.1; and a web page cannot send JSON to another origin without
            # a preflight, only a "simple" text/plain or form body.
            message = "Send the client metadata as application/json."
            return _json(400, {"error": "invalid_client_metadata", "error_description": message})
        peer = self._address(request)
        wait = await self.quotas.throttle(
            "oauth-register:" + peer, self.clock(), REGISTER_RATE, REGISTER_BURST
        )
        if wait:
            seconds = math.ceil(wait)
            message = f"Too many registrations from this address; retry in {seconds} seconds."
            refusal = {"error": "too_many_requests", "error_description": message}
            return _json(429, refusal, [(b"retry-after", str(seconds).encode())])
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            body = None
        try:
            _, answer = await self.clients.register(body)
        except ClientRefused as exc:
            return _json(400, {"error": exc.error, "error_description": exc.message})
        return _json(201, answer)

    async def _revoke(self, request: HttpRequest) -> Response:
        try:
            form = _single(_form(request))
            client = await self._client(request, form)
            await self.authority.revoke(client, _need(form, "token"))
        except OAuthError as exc:
            return _json(exc.status, exc.body())
        return HttpResponse(200, _api_headers())


def _joined(uri: str, query: str) -> str:
    """`uri` with `query` added to any query it has (RFC 6749 section 3.1.2: keep it)."""
    if "?" not in uri:
        return uri + "?" + query
    return uri + ("" if uri.endswith(("?", "&")) else "&") + query


# --- requests and responses ---------------------------------------------------------------------


def _media_type(request: HttpRequest) -> str:
    return (request.header("content-type") or "").split(";")[0].strip().lower()


def _form(request: HttpRequest) -> dict[str, list[str]]:
    if _media_type(request) != FORM:
        raise OAuthError("invalid_request", f"Send the parameters as {FORM}.")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "The form is not valid UTF-8 form data.") from None
    return _fields(text, "form")


def _fields(text: str, what: str) -> dict[str, list[str]]:
    """`text` parsed as form fields, or OAuthError naming what is wrong with it."""
    if text.count("&") >= MOST_FIELDS:
        raise OAuthError(
            "invalid_request", f"The {what} has more than {MOST_FIELDS} fields; send fewer."
        )
    return parse_qs(text, keep_blank_values=True)


def _page_form(request: HttpRequest) -> dict[str, list[str]]:
    try:
        return _form(request)
    except OAuthError as exc:
        raise BadRequest(exc.message) from None


def _single(fields: dict[str, list[str]]) -> dict[str, str]:
    """RFC 6749 section 3.1: no parameter may be sent twice."""
    twice = sorted(name for name, values in fields.items() if len(values) > 1)
    if twice:
        raise OAuthError("invalid_request", f"Parameters sent more than once: {', '.join(twice)}.")
    return {name: values[0] for name, values in fields.items()}


def _query(query: str) -> dict[str, str]:
    try:
        return _single(_fields(query, "request"))
    except OAuthError as exc:
        raise BadRequest(exc.message) from None


def _one(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name, [])
    if len(values) != 1:
        raise BadRequest(f"The form must carry exactly one {name}.")
    return values[0]


def _need(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise OAuthError("invalid_request", f"The request lacks {name}.")
    return value


def _asked(scope: str | None) -> set[str]:
    """The concrete scopes a request asks for; conveniences expanded, unknown ones left out."""
    names = (scope or "").split()
    known = [name for name in names if name in catalogue.VALID]
    return set(catalogue.expand(known))


def _basic(header: str | None) -> tuple[str | None, str | None]:
    if not header or header[:6].lower() != "basic ":
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError: not ASCII to begin with
        raise OAuthError("invalid_client", "The Basic credentials are not valid.", 401) from None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def _cookies(request: HttpRequest) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in (request.header("cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in found:
            found[name] = value
    return found


def _consent_page(
    email: str, client: OAuthClient, signed: str, csrf: str, pending: dict[str, Any]
) -> str:
    return pages.consent(email, _asker(client, pending), signed, csrf, frozenset(pending["sc"]))


def _asker(client: OAuthClient, pending: dict[str, Any]) -> pages.Asker:
    described_at = _host(client.id) if client.kind == "document" else None
    return pages.Asker(client.name, redirects.destination(pending["r"]), described_at)


def _host(uri: str) -> str:
    parts = urlsplit(uri)
    return parts.netloc or f"{parts.scheme}:"


def _page_headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", pages.POLICY.encode()),
    ]


def _html(status: int, body: str, extra: list[tuple[bytes, bytes]] | None = None) -> HttpResponse:
    headers = [(b"content-type", b"text/html; charset=utf-8"), *_page_headers(), *(extra or [])]
    return HttpResponse(status, headers, body.encode("utf-8"))


def _api_headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"cache-control", b"no-store"),
        (b"pragma", b"no-cache"),
        (b"access-control-allow-origin", b"*"),
    ]


def _json(
    status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> HttpResponse:
    headers = [(b"content-type", b"application/json"), *_api_headers(), *(extra or [])]
    if status == 401:
        headers.append((b"www-authenticate", b'Basic realm="sp00ky-mcp"'))
    return HttpResponse(status, headers, orjson.dumps(body))


def _preflight(methods: dict[str, Route]) -> HttpResponse:
    allowed = ", ".join(sorted({*methods, "OPTIONS"})).encode()
    return HttpResponse(
        204,
        [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", allowed),
            (b"access-control-allow-headers", b"authorization, content-type, mcp-protocol-version"),
            (b"access-control-max-age", b"600"),
        ],
    )
