"""Multi-round-trip requests: the signed requestState and how a retry restores its answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from sp00ky_mcp.engine import mrtr
from sp00ky_mcp.engine.context import ANONYMOUS, CallContext, InputRequired, Principal
from sp00ky_mcp.engine.errors import JsonRpcError
from sp00ky_mcp.engine.mrtr import (
    STATE_TTL_SECONDS,
    RequestStateSigner,
    input_required_result,
    params_digest,
    valid_answer,
)
from sp00ky_mcp.engine.versions import Era

KEY = b"k" * 32
NOW = 1_000_000.0
ALICE = Principal(token_id="tok-alice", user_id="u-alice", scopes=frozenset({"read"}))
BOB = Principal(token_id="tok-bob", user_id="u-bob", scopes=frozenset({"read"}))
CALL = {"name": "deploy", "arguments": {"app": "ghost"}}
ELICIT = {"method": "elicitation/create", "params": {"message": "Sure?", "requestedSchema": {}}}
ACCEPT = {"action": "accept", "content": {"ok": True}}
BAD_STATE = (
    "Invalid requestState: it failed its integrity check or expired; retry the original "
    "request without it."
)


class DummyPeer:
    """A peer that must never be used: restoring state is pure."""

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        raise AssertionError("no notifications expected")

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        raise AssertionError("no requests expected")

    def interrupt(self) -> None:
        raise AssertionError("no interrupts expected")


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    fixed = FixedClock(NOW)
    monkeypatch.setattr(mrtr, "time", fixed)
    return fixed


def context(principal: Principal = ALICE, **fields: Any) -> CallContext:
    return CallContext(
        era=Era.MODERN,
        protocol_version="2026-07-28",
        principal=principal,
        peer=DummyPeer(),
        **fields,
    )


def issue(
    signer: RequestStateSigner,
    ctx: CallContext,
    requests: dict[str, dict[str, Any]] | None = None,
    method: str = "tools/call",
    params: dict[str, Any] | None = None,
    state: str | None = None,
) -> str:
    """The requestState the server would hand out for one input_required round."""
    exc = InputRequired(requests if requests is not None else {"input-1": ELICIT}, state)
    return signer.state_for(method, params if params is not None else CALL, ctx, exc)


def retry(token: Any, responses: Any = None, **params: Any) -> dict[str, Any]:
    retried: dict[str, Any] = {**CALL, "requestState": token, **params}
    if responses is not None:
        retried["inputResponses"] = responses
    return retried


def rpc_parts(error: object) -> tuple[int, str, Any]:
    assert isinstance(error, JsonRpcError)
    return error.code, error.message, error.data


# sign and verify


def test_a_signed_payload_verifies_to_itself() -> None:
    signer = RequestStateSigner(KEY)
    payload = {"principal": "p", "answers": {"input-1": {"action": "decline"}}, "n": [1, 2.5]}
    assert signer.verify(signer.sign(payload)) == payload


def test_a_token_is_unpadded_urlsafe_base64_of_mac_then_json() -> None:
    signer = RequestStateSigner(KEY)
    token = signer.sign({"a": 1})
    assert "=" not in token and "+" not in token and "/" not in token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert raw[32:] == b'{"a":1}'
    assert raw[:32] == hmac.new(KEY, b'{"a":1}', hashlib.sha256).digest()


def test_signing_is_deterministic_for_one_key() -> None:
    assert RequestStateSigner(KEY).sign({"a": 1}) == RequestStateSigner(KEY).sign({"a": 1})


def test_a_signer_without_a_key_makes_a_random_one() -> None:
    first, second = RequestStateSigner(), RequestStateSigner()
    assert len(first.key) == 32
    assert first.key != second.key
    assert second.verify(first.sign({"a": 1})) is None


def test_a_token_signed_with_another_key_is_rejected() -> None:
    token = RequestStateSigner(b"x" * 32).sign({"a": 1})
    assert RequestStateSigner(KEY).verify(token) is None


def test_a_tampered_body_is_rejected() -> None:
    signer = RequestStateSigner(KEY)
    raw = base64.urlsafe_b64decode(signer.sign({"principal": "tok-alice"}) + "==")
    forged = raw.replace(b"tok-alice", b"tok-mallo")
    token = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    assert signer.verify(token) is None


def test_a_tampered_character_is_rejected() -> None:
    signer = RequestStateSigner(KEY)
    token = signer.sign({"principal": "tok-alice", "answers": {}})
    position = len(token) // 2
    flipped = "A" if token[position] != "A" else "B"
    assert signer.verify(token[:position] + flipped + token[position + 1 :]) is None


@pytest.mark.parametrize("token", ["", "abc", "!!!!", "é", "A" * 43, "x" * 5])
def test_garbage_tokens_are_rejected(token: str) -> None:
    assert RequestStateSigner(KEY).verify(token) is None


def test_a_signed_value_that_is_not_an_object_is_rejected() -> None:
    signer = RequestStateSigner(KEY)
    body = b"[1,2]"
    mac = hmac.new(KEY, body, hashlib.sha256).digest()
    token = base64.urlsafe_b64encode(mac + body).decode().rstrip("=")
    assert signer.verify(token) is None


# params_digest


def test_the_digest_is_32_hex_characters() -> None:
    digest = params_digest("tools/call", CALL)
    assert len(digest) == 32
    assert int(digest, 16) >= 0


def test_the_digest_ignores_retry_fields_and_meta() -> None:
    retried = {
        **CALL,
        "requestState": "x",
        "inputResponses": {"input-1": ACCEPT},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"},
    }
    assert params_digest("tools/call", retried) == params_digest("tools/call", CALL)


def test_the_digest_ignores_key_order() -> None:
    reordered = {"arguments": {"app": "ghost"}, "name": "deploy"}
    assert params_digest("tools/call", reordered) == params_digest("tools/call", CALL)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("tools/call", {"name": "deploy", "arguments": {"app": "other"}}),
        ("tools/call", {"name": "destroy", "arguments": {"app": "ghost"}}),
        ("tools/call", {"name": "deploy"}),
        ("prompts/get", CALL),
        ("resources/read", {**CALL, "uri": "res://x"}),
    ],
)
def test_the_digest_changes_with_method_name_arguments_or_uri(
    method: str, params: dict[str, Any]
) -> None:
    assert params_digest(method, params) != params_digest("tools/call", CALL)


# state_for and input_required_result


@pytest.mark.usefixtures("clock")
def test_the_state_binds_principal_method_digest_expiry_answers_and_asked() -> None:
    signer = RequestStateSigner(KEY)
    ctx = context(input_responses={"input-1": ACCEPT})
    token = issue(signer, ctx, {"input-2": ELICIT}, state="round-2")
    assert signer.verify(token) == {
        "principal": "tok-alice",
        "method": "tools/call",
        "digest": params_digest("tools/call", CALL),
        "expires": NOW + STATE_TTL_SECONDS,
        "answers": {"input-1": ACCEPT},
        "asked": {"input-2": "elicitation/create"},
        "state": "round-2",
    }


def test_the_state_lives_for_ten_minutes() -> None:
    assert STATE_TTL_SECONDS == 600.0


@pytest.mark.usefixtures("clock")
def test_an_input_required_result_carries_the_requests_and_a_signed_state() -> None:
    signer = RequestStateSigner(KEY)
    ctx = context()
    requests = {"input-1": ELICIT}
    result = input_required_result(InputRequired(requests), "tools/call", CALL, ctx, signer)
    assert result == {
        "resultType": "input_required",
        "inputRequests": {"input-1": ELICIT},
        "requestState": result["requestState"],
    }
    assert list(result) == ["resultType", "inputRequests", "requestState"]
    state = signer.verify(result["requestState"])
    assert state is not None
    assert (state["principal"], state["asked"], state["state"]) == (
        "tok-alice",
        {"input-1": "elicitation/create"},
        None,
    )


# restore


@pytest.mark.usefixtures("clock")
def test_a_first_call_without_state_adopts_its_input_responses() -> None:
    signer = RequestStateSigner(KEY)
    ctx = context()
    assert signer.restore("tools/call", {**CALL, "inputResponses": {"k": {"x": 1}}}, ctx) is None
    assert ctx.input_responses == {"k": {"x": 1}}
    assert ctx.request_state is None


@pytest.mark.usefixtures("clock")
def test_a_first_call_without_anything_has_no_answers() -> None:
    signer = RequestStateSigner(KEY)
    ctx = context(input_responses={"stale": 1})
    assert signer.restore("tools/call", CALL, ctx) is None
    assert ctx.input_responses == {}
    assert ctx.request_state is None


@pytest.mark.usefixtures("clock")
def test_a_retry_with_its_own_state_restores_the_answer() -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context())
    ctx = context()
    assert signer.restore("tools/call", retry(token, {"input-1": ACCEPT}), ctx) is None
    assert ctx.input_responses == {"input-1": ACCEPT}
    assert ctx.request_state is None


@pytest.mark.usefixtures("clock")
def test_the_handlers_round_state_comes_back_as_request_state() -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context(), state="step-2")
    ctx = context()
    assert signer.restore("tools/call", retry(token, {"input-1": ACCEPT}), ctx) is None
    assert ctx.request_state == "step-2"


@pytest.mark.usefixtures("clock")
def test_answers_of_earlier_rounds_are_merged_with_this_rounds_input_responses() -> None:
    signer = RequestStateSigner(KEY)
    earlier = {"input-1": ACCEPT}
    token = issue(signer, context(input_responses=earlier), {"input-2": ELICIT})
    ctx = context()
    decline = {"action": "decline"}
    assert signer.restore("tools/call", retry(token, {"input-2": decline}), ctx) is None
    assert ctx.input_responses == {"input-1": ACCEPT, "input-2": decline}


@pytest.mark.usefixtures("clock")
def test_answers_to_keys_that_were_not_asked_are_ignored() -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context(input_responses={"input-1": ACCEPT}), {"input-2": ELICIT})
    ctx = context()
    responses = {"input-2": ACCEPT, "input-1": {"action": "cancel"}, "other": {"x": 1}}
    assert signer.restore("tools/call", retry(token, responses), ctx) is None
    assert ctx.input_responses == {"input-1": ACCEPT, "input-2": ACCEPT}


@pytest.mark.usefixtures("clock")
def test_a_retry_that_omits_input_responses_keeps_the_earlier_answers() -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context(input_responses={"input-1": ACCEPT}), {"input-2": ELICIT})
    ctx = context()
    assert signer.restore("tools/call", retry(token), ctx) is None
    assert ctx.input_responses == {"input-1": ACCEPT}


@pytest.mark.usefixtures("clock")
def test_a_state_issued_to_another_principal_is_rejected() -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context(BOB))
    error = signer.restore("tools/call", retry(token, {"input-1": ACCEPT}), context(ALICE))
    assert rpc_parts(error) == (-32602, BAD_STATE, None)


@pytest.mark.usefixtures("clock")
def test_an_anonymous_state_is_rejected_for_an_authenticated_principal() -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context(ANONYMOUS))
    error = signer.restore("tools/call", retry(token, {"input-1": ACCEPT}), context(ALICE))
    assert rpc_parts(error) == (-32602, BAD_STATE, None)


@pytest.mark.usefixtures("clock")
def test_a_state_issued_for_another_method_is_rejected() -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context(), method="prompts/get")
    error = signer.restore("tools/call", retry(token, {"input-1": ACCEPT}), context())
    assert rpc_parts(error) == (-32602, BAD_STATE, None)


@pytest.mark.usefixtures("clock")
def test_a_state_replayed_with_other_arguments_is_rejected() -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context())
    params = retry(token, {"input-1": ACCEPT}, arguments={"app": "production"})
    assert rpc_parts(signer.restore("tools/call", params, context())) == (-32602, BAD_STATE, None)


def test_a_state_is_accepted_until_it_expires_and_rejected_from_then_on(
    clock: FixedClock,
) -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context())
    params = retry(token, {"input-1": ACCEPT})
    clock.now = NOW + STATE_TTL_SECONDS - 0.001
    assert signer.restore("tools/call", params, context()) is None
    clock.now = NOW + STATE_TTL_SECONDS
    assert rpc_parts(signer.restore("tools/call", params, context())) == (-32602, BAD_STATE, None)


@pytest.mark.usefixtures("clock")
def test_a_tampered_state_is_rejected_by_restore() -> None:
    signer = RequestStateSigner(KEY)
    token = issue(signer, context())
    claims = signer.verify(token)
    assert claims is not None
    forged = RequestStateSigner(b"z" * 32).sign(claims)
    error = signer.restore("tools/call", retry(forged, {"input-1": ACCEPT}), context())
    assert rpc_parts(error) == (-32602, BAD_STATE, None)


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize("token", [123, {"state": 1}, "", "garbage"])
def test_a_request_state_that_is_not_a_valid_token_is_rejected(token: object) -> None:
    signer = RequestStateSigner(KEY)
    error = signer.restore("tools/call", retry(token, {"input-1": ACCEPT}), context())
    assert rpc_parts(error) == (-32602, BAD_STATE, None)


@pytest.mark.usefixtures("clock")
def test_a_rejected_state_leaves_the_context_untouched() -> None:
    signer = RequestStateSigner(KEY)
    ctx = context(input_responses={"kept": 1})
    signer.restore("tools/call", retry("garbage", {"input-1": ACCEPT}), ctx)
    assert ctx.input_responses == {"kept": 1}
    assert ctx.request_state is None


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize("responses", [[ACCEPT], "yes", 1])
def test_input_responses_that_are_not_an_object_are_invalid_params(responses: object) -> None:
    signer = RequestStateSigner(KEY)
    error = signer.restore("tools/call", {**CALL, "inputResponses": responses}, context())
    assert rpc_parts(error) == (
        -32602,
        "Invalid params: 'inputResponses' must be an object keyed by the inputRequests keys.",
        None,
    )


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("elicitation/create", {"action": "maybe"}),
        ("elicitation/create", {}),
        ("sampling/createMessage", {"role": "assistant", "content": {}}),
        ("roots/list", {"roots": {}}),
        ("elicitation/create", "accept"),
    ],
)
def test_an_answer_of_the_wrong_shape_is_invalid_params(method: str, answer: Any) -> None:
    signer = RequestStateSigner(KEY)
    request = {"method": method, "params": {}}
    token = issue(signer, context(), {"q": request})
    error = signer.restore("tools/call", retry(token, {"q": answer}), context())
    assert rpc_parts(error) == (
        -32602,
        f"Invalid params: inputResponses['q'] is not a valid result for {method}.",
        None,
    )


@pytest.mark.usefixtures("clock")
def test_an_answer_that_is_not_an_object_is_invalid_params_without_state() -> None:
    signer = RequestStateSigner(KEY)
    error = signer.restore("tools/call", {**CALL, "inputResponses": {"q": 1}}, context())
    assert rpc_parts(error) == (
        -32602,
        "Invalid params: inputResponses['q'] is not a valid result for its request.",
        None,
    )


# valid_answer


@pytest.mark.parametrize(
    ("method", "answer", "valid"),
    [
        ("elicitation/create", {"action": "accept", "content": {}}, True),
        ("elicitation/create", {"action": "decline"}, True),
        ("elicitation/create", {"action": "cancel"}, True),
        ("elicitation/create", {"action": "ACCEPT"}, False),
        ("sampling/createMessage", {"role": "assistant", "content": {}, "model": "m"}, True),
        ("sampling/createMessage", {"role": "assistant", "model": "m"}, False),
        ("roots/list", {"roots": []}, True),
        ("roots/list", {}, False),
        (None, {}, True),
        ("x/unknown", {"anything": 1}, True),
        (None, [], False),
        ("roots/list", None, False),
    ],
)
def test_an_answer_must_have_the_shape_of_its_requests_result(
    method: str | None, answer: Any, valid: bool
) -> None:
    assert valid_answer(method, answer) is valid
