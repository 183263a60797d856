"""Driving sign-in as a browser and a client program would, over real HTTP: registration, the
authorization request, the sign-in and consent forms, the token endpoint."""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from sp00ky_mcp.product.oauth import pkce

from .product_support import ProductEnv

REDIRECT = "http://127.0.0.1:43210/callback"
PASSWORD = "correct horse battery staple"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@dataclass
class Asked:
    """An authorization request under way: its PKCE verifier, state and the page's form."""

    client_id: str
    verifier: str
    state: str
    page: httpx.Response

    def fields(self) -> dict[str, str]:
        return hidden_fields(self.page.text)


def root(env: ProductEnv) -> str:
    return env.server.url.removesuffix("/v1/mcp")


def resource(env: ProductEnv) -> str:
    """The resource the server's tokens are for: its MCP endpoint at its public URL."""
    public = env.server.config.public_url
    return (public.rstrip("/") + "/v1/mcp") if public else env.server.url


def hidden_fields(text: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([a-z]+)" value="([^"]*)">', text)
    return {name: html.unescape(value) for name, value in found}


async def register(env: ProductEnv, redirect: str = REDIRECT, **extra: Any) -> str:
    body = {"redirect_uris": [redirect], "client_name": "Test Client"} | extra
    body.setdefault("token_endpoint_auth_method", "none")
    reply = await env.http.post(root(env) + "/oauth/register", json=body)
    assert reply.status_code == 201, reply.text
    client_id: str = reply.json()["client_id"]
    return client_id


async def with_password(env: ProductEnv, email: str = "ada@example.com") -> None:
    user = await env.accounts.ensure_user(email)
    await env.accounts.set_password(user, PASSWORD)


def authorize_url(env: ProductEnv, client_id: str, challenge: str, **extra: str | None) -> str:
    """The authorization request; an `extra` parameter given as None is left out."""
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-" + secrets.token_hex(4),
        "resource": resource(env),
        "scope": "mcp:read",
    }
    params.update(extra)
    return root(env) + "/oauth/authorize?" + urlencode(present(params))


def present(params: dict[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in params.items() if value is not None}


async def ask(
    browser: httpx.AsyncClient, env: ProductEnv, client_id: str, **extra: str | None
) -> Asked:
    verifier = secrets.token_urlsafe(48)
    url = authorize_url(env, client_id, pkce.s256(verifier), **extra)
    page = await browser.get(url)
    state = parse_qs(urlsplit(url).query)["state"][0]
    return Asked(client_id, verifier, state, page)


async def sign_in(
    browser: httpx.AsyncClient,
    env: ProductEnv,
    asked: Asked,
    email: str = "ada@example.com",
    password: str = PASSWORD,
) -> httpx.Response:
    form = asked.fields() | {"email": email, "password": password}
    return await browser.post(root(env) + "/oauth/authorize", data=form)


async def allow(
    browser: httpx.AsyncClient,
    env: ProductEnv,
    consent_page: httpx.Response,
    scopes: list[str] | None = None,
    decision: str = "allow",
) -> httpx.Response:
    fields = hidden_fields(consent_page.text)
    ticked = scopes if scopes is not None else ticked_scopes(consent_page.text)
    form: dict[str, str | list[str]] = {**fields, "decision": decision, "scope": ticked}
    return await browser.post(root(env) + "/oauth/authorize", data=form)


def ticked_scopes(text: str) -> list[str]:
    return re.findall(r'name="scope" value="([^"]+)" checked', text)


def answer_of(reply: httpx.Response) -> dict[str, str]:
    """The parameters a redirect back to the client carries."""
    assert reply.status_code == 303, reply.text
    location = reply.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def code_for(
    env: ProductEnv, client_id: str, scopes: list[str] | None = None, **extra: str | None
) -> tuple[str, Asked]:
    """A code, through the whole browser part: request, sign-in, consent."""
    async with httpx.AsyncClient() as browser:
        asked = await ask(browser, env, client_id, **extra)
        consent = await sign_in(browser, env, asked)
        assert consent.status_code == 200, consent.text
        answer = answer_of(await allow(browser, env, consent, scopes))
    assert answer["state"] == asked.state
    return answer["code"], asked


async def token_request(env: ProductEnv, **form: str) -> httpx.Response:
    return await env.http.post(root(env) + "/oauth/token", data=form, headers=FORM)


async def redeem(env: ProductEnv, code: str, asked: Asked, **extra: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": asked.client_id,
        "code_verifier": asked.verifier,
        "resource": resource(env),
    }
    form.update(extra)
    return await token_request(env, **present(form))


async def signed_in_tokens(
    env: ProductEnv, scopes: list[str] | None = None
) -> tuple[str, dict[str, Any]]:
    """A client registered, a user signed in and consenting: the client id and the tokens."""
    await with_password(env)
    client_id = await register(env)
    code, asked = await code_for(env, client_id, scopes)
    reply = await redeem(env, code, asked)
    assert reply.status_code == 200, reply.text
    return client_id, reply.json()


__all__ = [
    "FORM",
    "PASSWORD",
    "REDIRECT",
    "Asked",
    "allow",
    "answer_of",
    "ask",
    "authorize_url",
    "code_for",
    "hidden_fields",
    "redeem",
    "register",
    "resource",
    "root",
    "sign_in",
    "signed_in_tokens",
    "ticked_scopes",
    "token_request",
    "with_password",
]
