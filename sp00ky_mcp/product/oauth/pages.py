"""The sign-in, consent and error pages: server-rendered HTML without scripts, readable on a
phone, every control labelled.  Pure: every value is escaped here.

The style sheet is inline and allowed by its digest in the Content-Security-Policy, which
allows nothing else (no scripts, no frames: `frame-ancestors 'none'` stops clickjacking of
the consent button)."""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import NamedTuple

from .. import scopes

STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f4f6;color:#1b1b1f}
main{max-width:30rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:12px}
h1{font-size:1.35rem;margin-top:0}label{display:block;margin:.75rem 0 .25rem}
input[type=email],input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;
font-size:1rem;border:1px solid #888;border-radius:6px}
fieldset{border:1px solid #ccc;border-radius:6px;margin:1rem 0}
.scope label{display:flex;gap:.5rem;align-items:flex-start;margin:.4rem 0}
.warn{color:#8a1c1c}.error{background:#fde8e8;padding:.6rem;border-radius:6px}
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:1px solid #333;
margin:.5rem .5rem 0 0}button.primary{background:#1b1b1f;color:#fff}
.host{font-family:ui-monospace,monospace;word-break:break-all}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; frame-ancestors 'none'"
)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · Sp00ky</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _hidden(request: str, csrf: str) -> str:
    return (
        f'<input type="hidden" name="request" value="{escape(request)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
    )


class Asker(NamedTuple):
    """Who asks, as the page shows it: the client's name, the host its redirect goes to, and
    for a client described by a metadata document the host that document is served from
    (the one a user can trust the name to, MCP authorization 2025-11-25)."""

    name: str
    redirect_host: str
    described_at: str | None = None


def _asker(asker: Asker) -> str:
    # A registered client's name is its own word (RFC 7591 section 5): say so.
    where = (
        f' (described at <span class="host">{escape(asker.described_at)}</span>)'
        if asker.described_at
        else " (the name it gave itself)"
    )
    return (
        f"<p><strong>{escape(asker.name)}</strong>{where} asks to use your Sp00ky account. "
        f'After you answer, you go back to <span class="host">{escape(asker.redirect_host)}'
        "</span>.</p>"
    )


def signin(
    asker: Asker,
    request: str,
    csrf: str,
    email: str = "",
    error: str | None = None,
) -> str:
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        "<h1>Sign in to Sp00ky</h1>"
        + _asker(asker)
        + problem
        + '<form method="post" action="/oauth/authorize">'
        + _hidden(request, csrf)
        + '<input type="hidden" name="step" value="signin">'
        + '<label for="email">Email</label>'
        + f'<input id="email" name="email" type="email" autocomplete="username" required '
        f'value="{escape(email)}">'
        + '<label for="password">Password</label>'
        + '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        + '<button class="primary" type="submit">Sign in</button></form>'
    )
    return _page("Sign in", body)


def consent(
    email: str,
    asker: Asker,
    request: str,
    csrf: str,
    asked: frozenset[str],
) -> str:
    """Read scopes ticked; write scopes and `secrets:reveal` left for the user to tick, the
    ones the client asked for marked as such."""
    body = (
        "<h1>Allow access?</h1>"
        + _asker(asker)
        + f"<p>Signed in as <strong>{escape(email)}</strong>.</p>"
        + '<form method="post" action="/oauth/authorize">'
        + _hidden(request, csrf)
        + '<input type="hidden" name="step" value="consent">'
        + _scope_set("Read", scopes.READ_SCOPES, asked, ticked=True)
        + _scope_set("Change", scopes.WRITE_SCOPES, asked, ticked=False)
        + _reveal(asked)
        + '<button class="primary" type="submit" name="decision" value="allow">Allow</button>'
        + '<button type="submit" name="decision" value="deny">Deny</button></form>'
    )
    return _page("Allow access", body)


def _scope_set(legend: str, names: tuple[str, ...], asked: frozenset[str], ticked: bool) -> str:
    rows = "".join(_scope(name, asked, ticked) for name in names)
    return f'<fieldset class="scope"><legend>{legend}</legend>{rows}</fieldset>'


def _scope(name: str, asked: frozenset[str], ticked: bool) -> str:
    ident = "scope-" + name.replace(":", "-")
    note = " <em>(asked for)</em>" if name in asked and not ticked else ""
    checked = " checked" if ticked else ""
    return (
        f'<label for="{ident}"><input type="checkbox" id="{ident}" name="scope" '
        f'value="{escape(name)}"{checked}> <span><code>{escape(name)}</code>: '
        f"{escape(scopes.GRANTS[name])}{note}</span></label>"
    )


def _reveal(asked: frozenset[str]) -> str:
    return (
        '<fieldset class="scope"><legend>Secret values</legend>'
        + _scope(scopes.REVEAL, asked, ticked=False)
        + '<p class="warn">Only allow this if the client must read secret values: with it, '
        "environment variable values and vault material reach the client and its model "
        "unmasked.</p></fieldset>"
    )


def failure(title: str, message: str) -> str:
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")


def refused(message: str, back: str, host: str) -> str:
    """A request that cannot go on, with a link that takes the answer back to the client:
    followed only if the user chooses to."""
    return _page(
        "This sign-in cannot go on",
        "<h1>This sign-in cannot go on</h1>"
        f"<p>{escape(message)}</p>"
        f'<p><a href="{escape(back)}">Go back to {escape(host)}</a> to tell the app.</p>',
    )
