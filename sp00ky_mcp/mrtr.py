"""Multi-round-trip requests (2026-07-28, basic/patterns/mrtr): a handler that needs the client
to answer an elicitation or sampling request ends the round with an `input_required` result; the
client retries with `inputResponses` and the `requestState` we gave it.

`requestState` travels through the client, so it is attacker-controlled: it is HMAC-signed and
bound to the principal, the method, a digest of the request's salient params and an expiry
(mrtr.mdx, "Security": MUST integrity-protect, SHOULD bind principal, expiry and method).  It
also carries the answers of earlier rounds, since a retry only answers the latest round.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

import orjson

from .context import CallContext, InputRequired
from .errors import INVALID_PARAMS, JsonRpcError

STATE_TTL_SECONDS = 600.0
_SALIENT = ("name", "arguments", "uri")


def params_digest(method: str, params: dict[str, Any]) -> str:
    salient = {k: params[k] for k in _SALIENT if k in params}
    material = orjson.dumps([method, salient], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(material).hexdigest()[:32]


class RequestStateSigner:
    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def sign(self, payload: dict[str, Any]) -> str:
        body = orjson.dumps(payload)
        mac = hmac.new(self.key, body, hashlib.sha256).digest()
        return _b64(mac + body)

    def verify(self, token: str) -> dict[str, Any] | None:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            return None
        mac, body = raw[:32], raw[32:]
        if not hmac.compare_digest(mac, hmac.new(self.key, body, hashlib.sha256).digest()):
            return None
        payload = orjson.loads(body)
        return payload if isinstance(payload, dict) else None

    def restore(self, method: str, params: dict[str, Any], ctx: CallContext) -> JsonRpcError | None:
        """Load earlier answers from a retry's requestState and inputResponses."""
        responses = params.get("inputResponses")
        token = params.get("requestState")
        if token is None:
            ctx.input_responses = dict(responses) if isinstance(responses, dict) else {}
            return None
        state = self.verify(token) if isinstance(token, str) else None
        if state is None or not _binds(state, method, params, ctx):
            return JsonRpcError(INVALID_PARAMS, "Invalid requestState: retry the original "
                                "request without requestState and inputResponses.")
        answers = dict(state.get("answers") or {})
        answers.update(responses if isinstance(responses, dict) else {})
        ctx.input_responses = answers
        ctx.request_state = state
        return None

    def state_for(self, method: str, params: dict[str, Any], ctx: CallContext) -> str:
        return self.sign({
            "principal": ctx.principal.token_id,
            "method": method,
            "digest": params_digest(method, params),
            "expires": time.time() + STATE_TTL_SECONDS,
            "answers": ctx.input_responses,
        })


def _binds(state: dict[str, Any], method: str, params: dict[str, Any], ctx: CallContext) -> bool:
    return (
        state.get("principal") == ctx.principal.token_id
        and state.get("method") == method
        and state.get("digest") == params_digest(method, params)
        and float(state.get("expires", 0)) > time.time()
    )


def input_required_result(
    exc: InputRequired, method: str, params: dict[str, Any], ctx: CallContext,
    signer: RequestStateSigner,
) -> dict[str, Any]:
    return {
        "resultType": "input_required",
        "inputRequests": {exc.key: {"method": exc.method, "params": exc.params}},
        "requestState": signer.state_for(method, params, ctx),
    }


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
