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
import time
from typing import Any

import orjson

from .context import CallContext, InputRequired
from .digest import canonical_digest
from .errors import JsonRpcError, invalid_params, quoted
from .keys import KeyRing

STATE_TTL_SECONDS = 600.0
_SALIENT = ("name", "arguments", "uri")


def params_digest(method: str, params: dict[str, Any]) -> str:
    salient = {k: params[k] for k in _SALIENT if k in params}
    return canonical_digest([method, salient])[:32]


class RequestStateSigner:
    """Signs with the ring's newest key; verifies with any key the ring still accepts (see
    `keys.KeyRing`), so every replica given the same keys verifies what another signed."""

    def __init__(self, keys: KeyRing | bytes | None = None) -> None:
        self.ring = keys if isinstance(keys, KeyRing) else KeyRing([keys] if keys else [])

    @property
    def key(self) -> bytes:
        return self.ring.signing

    def sign(self, payload: dict[str, Any]) -> str:
        body = orjson.dumps(payload)
        return _b64(self.ring.mac(body) + body)

    def verify(self, token: str) -> dict[str, Any] | None:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            return None
        mac, body = raw[:32], raw[32:]
        if not self.ring.check(mac, body):
            return None
        payload = orjson.loads(body)
        return payload if isinstance(payload, dict) else None

    def restore(self, method: str, params: dict[str, Any], ctx: CallContext) -> JsonRpcError | None:
        """Load a retry's answers: those of this round from inputResponses, earlier ones from
        the signed requestState.  Answers to keys we did not ask are ignored (mrtr.mdx)."""
        if "inputResponses" not in params and "requestState" not in params:
            if ctx.input_responses:
                ctx.input_responses = {}
            ctx.request_state = None
            return None
        responses = params.get("inputResponses", {})
        if not isinstance(responses, dict):
            return invalid_params(
                "Invalid params: 'inputResponses' must be an object keyed by "
                "the inputRequests keys."
            )
        token = params.get("requestState")
        if token is None:
            return _adopt(ctx, {}, responses, None, None)
        state = self.verify(token) if isinstance(token, str) else None
        if state is None or not _binds(state, method, params, ctx):
            return invalid_params(
                "Invalid requestState: it failed its integrity check or "
                "expired; retry the original request without it."
            )
        app_state = state.get("state")
        return _adopt(
            ctx,
            state.get("answers") or {},
            responses,
            state.get("asked"),
            app_state if isinstance(app_state, str) else None,
        )

    def state_for(
        self, method: str, params: dict[str, Any], ctx: CallContext, exc: InputRequired
    ) -> str:
        return self.sign(
            {
                "principal": ctx.principal.token_id,
                "method": method,
                "digest": params_digest(method, params),
                "expires": time.time() + STATE_TTL_SECONDS,
                "answers": ctx.input_responses,
                "asked": {key: request.get("method") for key, request in exc.requests.items()},
                "state": exc.state,
            }
        )


def valid_answer(method: str | None, answer: Any) -> bool:
    """The shape a client result must have for the request it answers (schema:
    ElicitResult, CreateMessageResult, ListRootsResult)."""
    if not isinstance(answer, dict):
        return False
    if method == "elicitation/create":
        return answer.get("action") in ("accept", "decline", "cancel")
    if method == "sampling/createMessage":
        return {"role", "content", "model"} <= answer.keys()
    if method == "roots/list":
        return isinstance(answer.get("roots"), list)
    return True


def _adopt(
    ctx: CallContext,
    earlier: dict[str, Any],
    responses: dict[str, Any],
    asked: dict[str, Any] | None,
    app_state: str | None,
) -> JsonRpcError | None:
    expected = asked if isinstance(asked, dict) else dict.fromkeys(responses)
    fresh = {k: v for k, v in responses.items() if k in expected}
    for key, answer in fresh.items():
        if not valid_answer(expected[key], answer):
            return invalid_params(
                f"Invalid params: inputResponses[{quoted(key)}] is not a valid "
                f"result for {expected[key] or 'its request'}."
            )
    ctx.input_responses = {**earlier, **fresh}
    ctx.request_state = app_state
    return None


def _binds(state: dict[str, Any], method: str, params: dict[str, Any], ctx: CallContext) -> bool:
    return (
        state.get("principal") == ctx.principal.token_id
        and state.get("method") == method
        and state.get("digest") == params_digest(method, params)
        and float(state.get("expires", 0)) > time.time()
    )


def input_required_result(
    exc: InputRequired,
    method: str,
    params: dict[str, Any],
    ctx: CallContext,
    signer: RequestStateSigner,
) -> dict[str, Any]:
    """Every round carries a signed requestState, even when the handler keeps none, so the
    answers of earlier rounds and the binding to this principal and request travel with it."""
    return {
        "resultType": "input_required",
        "inputRequests": exc.requests,
        "requestState": signer.state_for(method, params, ctx, exc),
    }


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
