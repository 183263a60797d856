"""How a product tool is declared: one `Spec` per tool, turned into a catalogue `Tool` by
`product_tool`, which adds what every product tool shares: tenant resolution, idempotency,
confirmation of destructive actions, pages, and masking of the tenant's secret values in
everything the tool sends (its result or error, and its progress and log notifications).
"""

from __future__ import annotations

import logging
import unicodedata
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from ...engine.catalogue import Tool
from ...engine.context import CallContext, Peer
from ...engine.errors import ToolError
from ...engine.protocol import ToolResult, encoded_result
from ...engine.redaction import MARKER, Secret, SecretMatcher, encoder_default
from ..accounts import arguments_digest
from ..cloud.base import Caller, Cloud, Tenant, page, page_bounds
from ..store import Store, StoreInDoubt, StoreUnavailable, Version
from ..store.repos.idempotency import (
    Claim,
    IdempotencyRecord,
    is_changed,
    is_changing,
    is_running,
)
from ..store.repos.projects import Project

Handler = Callable[["Call"], Awaitable[dict[str, Any]]]
# The tool, who asked (the user, and whether they may see secrets) and the arguments,
# tenant_id among them; the user's role in the tenant comes from the store, so it is covered
# by its version.
ResultKey = tuple[str, str, bool, bytes]
# The tenant a result belongs to, and the result.
Kept = tuple[str, ToolResult]
# The result cache's bounds in bytes: in all, and for the results one user's calls left.
log = logging.getLogger("sp00ky_mcp.product.tools")
RESULT_BYTES_KEPT = 64 * 1024 * 1024
RESULT_BYTES_PER_USER = 8 * 1024 * 1024
# What a kept result costs beyond its bytes (its key, tuples, dict slots), counted with them.
RESULT_OVERHEAD = 512
SORTED = orjson.OPT_SORT_KEYS


def text(max_length: int, description: str, min_length: int = 1) -> dict[str, Any]:
    """A string argument of bounded length."""
    return {
        "type": "string",
        "minLength": min_length,
        "maxLength": max_length,
        "description": description,
    }


PROJECT = text(128, "The project's name or id.")
TENANT_ID = text(64, "Act in this team tenant instead of your personal one.")
IDEMPOTENCY_KEY = text(
    128,
    "Retrying with the same key returns the first result (without any secret it showed) and "
    "changes nothing more; a retry while the first call still runs is refused.",
)
SERVICE = text(63, "A service of the project, e.g. web, ssr, api or worker.")
CURSOR = text(64, "next_cursor from a previous page.")
STR = {"type": "string"}
TIME = {"type": "string", "description": "ISO 8601, UTC."}
MEMBERS = "Any member of the tenant may use it."
ADMIN = "Needs the owner or admin role in a team tenant."
CONFIRM_SCHEMA = {
    "type": "object",
    "properties": {
        "confirm": {"type": "boolean", "title": "Confirm", "description": "Yes, go ahead."}
    },
    "required": ["confirm"],
}


def limit(default: int, maximum: int) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": maximum,
        "default": default,
        "description": f"How many items to return (default {default}, at most {maximum}).",
    }


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*kinds, "null"]}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema with every listed property required and nothing else allowed."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def list_of(item: dict[str, Any]) -> dict[str, Any]:
    """The one shape every list result shares."""
    return obj(
        {
            "items": {"type": "array", "items": item},
            "next_cursor": {"type": ["string", "null"]},
            "truncated": {"type": "boolean"},
        }
    )


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    scope: str
    title: str
    description: str
    arguments: dict[str, Any]
    required: tuple[str, ...]
    output: dict[str, Any]
    handler: Handler
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False
    tenant_scoped: bool = True
    # The result depends on the arguments, the caller and what the store holds, and on
    # nothing else (no clock, no randomness): it is served again until the store changes.
    pure: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mutates(self) -> bool:
        return not self.read_only

    def input_schema(self) -> dict[str, Any]:
        properties = dict(self.arguments)
        if self.tenant_scoped:
            properties["tenant_id"] = TENANT_ID
        if self.mutates:
            properties["idempotency_key"] = IDEMPOTENCY_KEY
        return {
            "type": "object",
            "properties": properties,
            "required": list(self.required),
            "additionalProperties": False,
        }

    def annotations(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }


@dataclass(slots=True)
class Call:
    """What a product handler sees: its arguments, the caller, and the resolved tenant."""

    cloud: Cloud
    args: dict[str, Any]
    ctx: CallContext
    tenant: Tenant
    _secrets: tuple[str, ...] | None = field(default=None, init=False, repr=False)
    _masks: Masks | None = field(default=None, init=False, repr=False)

    @property
    def user_id(self) -> str:
        assert self.ctx.principal.user_id is not None
        return self.ctx.principal.user_id

    async def project(self) -> Project:
        return await self.cloud.project(self.tenant, self.args["project"])

    def page(self, items: list[Any], default_limit: int) -> dict[str, Any]:
        """The page of `items` that the call's cursor and limit ask for."""
        # int(): the schema's "integer" also admits 5.0, which cannot slice a list.
        size = int(self.args.get("limit", default_limit))
        offset, size = page_bounds(self.args.get("cursor"), size)
        return page(items, offset, size)

    async def confirm(self, action: str) -> None:
        """Destructive tools ask the human first when the client can ask (elicitation);
        without that capability the client's own approval prompt, driven by
        destructiveHint, is the gate."""
        if not self.ctx.supports("elicitation"):
            return
        answer = await self.ctx.elicit(f"Confirm: {action}. This cannot be undone.", CONFIRM_SCHEMA)
        content = answer.get("content") if isinstance(answer, dict) else None
        accepted = isinstance(answer, dict) and answer.get("action") == "accept"
        if not (accepted and isinstance(content, dict) and content.get("confirm") is True):
            raise ToolError(f"Not confirmed, so nothing was changed: {action}.")

    # --- masking ---------------------------------------------------------------------------

    async def secrets(self) -> tuple[str, ...]:
        """The tenant's secret values this token may not see (none with secrets:reveal),
        longest first; values shorter than MIN_MASKED_LENGTH are left out, so ordinary words
        stay readable.  Read once, until `forget_secrets`."""
        if self._secrets is None:
            reveal = self.ctx.principal.can_reveal
            self._secrets = () if reveal else await self.cloud.secret_values(self.tenant.id)
        return self._secrets

    def forget_secrets(self) -> None:
        """The handler may have stored new secret values: the next mask reads them again."""
        self._secrets = None
        self._masks = None

    async def prepare_masks(self) -> None:
        """Readies what `mask` and `mask_all` need: built off the event loop when the secret
        values are new, so that no other connection waits for it."""
        if self._masks is None:
            self._masks = await masks_for(self.tenant.id, await self.secrets())

    def mask(self, text: str) -> str:
        """`text` with every secret value in it replaced by the redaction marker: one scan of
        the text, whatever the number of secrets."""
        masks = self._ready_masks()
        return text if masks is NO_MASKS else masks.plain.sub(text, MARKER)

    def mask_all(self, value: Any) -> Any:
        """Secret values inside other output (log lines, build output, messages) are masked
        the way fields are; `Secret` fields themselves are left to the encoder.  One encoded
        scan tells whether any secret occurs at all; only then is the value walked."""
        masks = self._ready_masks()
        if masks is NO_MASKS or not _mentions(value, masks.encoded):
            return value
        return _scrubbed(value, masks.plain)

    def mask_error(self, text: str) -> str:
        """An error's text masked as `mask` does, but where it quotes the caller's own
        arguments.  Errors quote arguments ("No project '…'"): masking a quoted argument
        where it holds a secret value would tell a caller who cannot see secret values that
        it holds one, an oracle for guessing them.  The quote is left as sent (it tells the
        caller nothing it did not send); the rest of the text, stored text included, is
        masked as anywhere else."""
        masks = self._ready_masks()
        if masks is NO_MASKS or not _mentions(self.args, masks.encoded):
            return self.mask(text)
        quoted = SecretMatcher(
            spelling
            for given in _strings(self.args)
            for spelling in _spellings(given)
            if masks.plain.found(spelling)
        )
        parts: list[str] = []
        done = 0
        for start, end in quoted.spans(text):
            parts += (masks.plain.sub(text[done:start], MARKER), text[start:end])
            done = end
        parts.append(masks.plain.sub(text[done:], MARKER))
        return "".join(parts)

    def _ready_masks(self) -> Masks:
        """The masks `prepare_masks` built, which every caller readies first."""
        assert self._masks is not None, "prepare_masks() comes before masking"
        return self._masks


class MaskingPeer:
    """The peer a product handler talks through: its notifications (progress messages, log
    data) reach the client with the tenant's secret values masked.  The progress token is
    the client's own and passes as is, as do requests to the client."""

    def __init__(self, peer: Peer, call: Call) -> None:
        self.peer = peer
        self.call = call

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self.call.prepare_masks()
        masked = {
            k: v if k == "progressToken" else self.call.mask_all(v) for k, v in params.items()
        }
        await self.peer.notify(method, masked)

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        return await self.peer.request(method, params)

    def interrupt(self) -> None:
        self.peer.interrupt()


@dataclass(frozen=True, slots=True)
class Masks:
    """A tenant's secret values, ready to be found: as they are, and as they appear inside
    encoded JSON text (quotes, backslashes and control characters escaped)."""

    plain: SecretMatcher
    encoded: SecretMatcher


NO_MASKS = Masks(SecretMatcher(()), SecretMatcher(()))
# The masks of this many tenants' secret values are kept (one set a tenant: the newest), at
# most MASKS_KEPT_CHARACTERS of values in all; the least recently used are dropped first.
MASKS_KEPT = 1024
MASKS_KEPT_CHARACTERS = 16 * 1024 * 1024
# A set of values this small is built on the event loop: quicker than a trip to a thread.
BUILT_INLINE_CHARACTERS = 16 * 1024
_masks_kept: OrderedDict[str, tuple[tuple[str, ...], Masks, int]] = OrderedDict()
_masks_size = [0]


def _kept_masks(tenant_id: str, values: tuple[str, ...]) -> Masks | None:
    kept = _masks_kept.get(tenant_id)
    if kept is None or kept[0] != values:
        return None
    _masks_kept.move_to_end(tenant_id)
    return kept[1]


async def masks_for(tenant_id: str, values: tuple[str, ...]) -> Masks:
    """The masks of a tenant's `values`, built once per set of values (a tenant's secrets
    change rarely), and for a large set in a worker thread: their size is the tenant's to
    choose, and building them on the event loop would hold up every other connection."""
    if not values:
        return NO_MASKS
    masks = _kept_masks(tenant_id, values)
    if masks is not None:
        return masks
    size = sum(map(len, values))
    if size <= BUILT_INLINE_CHARACTERS:
        masks = _build_masks(values)
    else:
        masks = await anyio.to_thread.run_sync(_build_masks, values)
    _keep_masks(tenant_id, values, masks, size)
    return masks


def _keep_masks(tenant_id: str, values: tuple[str, ...], masks: Masks, size: int) -> None:
    """Replaces the tenant's older masks; the oldest tenants' go past the bounds."""
    replaced = _masks_kept.pop(tenant_id, None)
    if replaced is not None:
        _masks_size[0] -= replaced[2]
    _masks_kept[tenant_id] = (values, masks, size)
    _masks_size[0] += size
    while len(_masks_kept) > MASKS_KEPT or _masks_size[0] > MASKS_KEPT_CHARACTERS:
        _, (_, _, dropped) = _masks_kept.popitem(last=False)
        _masks_size[0] -= dropped


def _build_masks(values: tuple[str, ...]) -> Masks:
    encoded = (orjson.dumps(v).decode()[1:-1] for v in values)
    return Masks(SecretMatcher(values), SecretMatcher(encoded))


def _opaque(value: Any) -> Any:
    """`Secret` fields are the encoder's business, not the scan's."""
    if isinstance(value, Secret):
        return None
    raise TypeError(type(value).__name__)


def _spellings(given: str) -> set[str]:
    """How an error may quote an argument: as given, or as the tool normalised it (a
    hostname lowercased, a name or address in NFKC)."""
    normal = unicodedata.normalize("NFKC", given)
    return {given, given.lower(), normal, normal.lower()}


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _mentions(value: Any, encoded_values: SecretMatcher) -> bool:
    try:
        encoded = orjson.dumps(value, default=_opaque).decode()
    except TypeError:
        return True
    return encoded_values.found(encoded)


class ResultCache:
    """The encoded results of pure tools, kept while the store's version stays the same (as
    `ReadCache` keeps its values) and bounded in bytes: in all, and per user, so that one
    client's large results can neither fill the server's memory nor push out everyone
    else's.  The oldest go first; a result larger than a user's share is not kept."""

    def __init__(
        self, store: Store, total: int = RESULT_BYTES_KEPT, share: int = RESULT_BYTES_PER_USER
    ) -> None:
        self.store = store
        self.total = total
        self.share = share
        self.bytes = 0
        self._entries: OrderedDict[ResultKey, tuple[Kept, int]] = OrderedDict()
        # Each user's keys, oldest first, and the bytes they hold.
        self._by_user: dict[str, OrderedDict[ResultKey, None]] = {}
        self._user_bytes: dict[str, int] = {}
        self._version: Version = (-1, -1)

    def user_bytes(self, user_id: str) -> int:
        return self._user_bytes.get(user_id, 0)

    async def get(self, key: ResultKey) -> tuple[Kept | None, Version]:
        """The result kept for `key`, if any, and the store's version now."""
        version = await self.store.version()
        if version != self._version:
            self.clear()
            self._version = version
        entry = self._entries.get(key)
        return (entry[0] if entry else None), version

    async def put(self, key: ResultKey, kept: Kept, read_at: Version) -> None:
        """Keeps `kept`, computed at version `read_at`, unless the store has changed since."""
        if read_at != self._version or key in self._entries:
            return
        if await self.store.version() != read_at:
            return
        size = len(key[3]) + kept[1].encoded_size + RESULT_OVERHEAD
        if size > self.share:
            return
        self._make_room(key[1], size)
        self._entries[key] = (kept, size)
        self._by_user.setdefault(key[1], OrderedDict())[key] = None
        self._user_bytes[key[1]] = self.user_bytes(key[1]) + size
        self.bytes += size

    def clear(self) -> None:
        self._entries.clear()
        self._by_user.clear()
        self._user_bytes.clear()
        self.bytes = 0

    def _make_room(self, user_id: str, size: int) -> None:
        while self.user_bytes(user_id) + size > self.share:
            self._drop(next(iter(self._by_user[user_id])))
        while self._entries and self.bytes + size > self.total:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: ResultKey) -> None:
        _, size = self._entries.pop(key)
        user_id = key[1]
        del self._by_user[user_id][key]
        self._user_bytes[user_id] -= size
        if not self._by_user[user_id]:
            del self._by_user[user_id], self._user_bytes[user_id]
        self.bytes -= size


# One result cache per store, shared by all the tools that serve from it.
_result_caches: weakref.WeakKeyDictionary[Store, ResultCache] = weakref.WeakKeyDictionary()


def results_of(store: Store) -> ResultCache:
    """The result cache of the tools that serve from `store`."""
    cache = _result_caches.get(store)
    if cache is None:
        cache = _result_caches[store] = ResultCache(store)
    return cache


def product_tool(cloud: Cloud, spec: Spec) -> Tool:
    results = results_of(cloud.store)

    async def handler(args: dict[str, Any], ctx: CallContext) -> Any:
        principal = ctx.principal
        assert principal.user_id is not None, "product tools need an authenticated principal"
        if not spec.pure:
            return await _masked_result(await _call(cloud, args, ctx), spec)
        arguments = orjson.dumps(args, option=SORTED)
        key = (spec.name, principal.user_id, principal.can_reveal, arguments)
        kept, version = await results.get(key)
        if kept is None:
            call = await _call(cloud, args, ctx)
            result = await _masked_result(call, spec)
            kept = (call.tenant.id, encoded_result(result, encoder_default(principal.can_reveal)))
            await results.put(key, kept, version)
        ctx.tenant_id = kept[0]
        return kept[1]

    return Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema(),
        output_schema=spec.output,
        annotations=spec.annotations(),
        handler=handler,
        scope=spec.scope,
    )


async def _call(cloud: Cloud, args: dict[str, Any], ctx: CallContext) -> Call:
    assert ctx.principal.user_id is not None
    tenant = await cloud.tenant(ctx.principal.user_id, args.get("tenant_id"))
    ctx.tenant_id = tenant.id
    return Call(cloud, args, ctx, tenant)


async def _masked_result(call: Call, spec: Spec) -> dict[str, Any]:
    try:
        result = await _run_masked(call, spec)
    except ToolError as exc:
        await call.prepare_masks()
        raise ToolError(call.mask_error(exc.message)) from None
    await call.prepare_masks()
    masked: dict[str, Any] = call.mask_all(result)
    return masked


async def _run_masked(call: Call, spec: Spec) -> dict[str, Any]:
    """Runs the handler talking through a `MaskingPeer`; afterwards the secret values are
    read again for the result, since the handler may have stored new ones."""
    ctx = call.ctx
    peer = ctx.peer
    ctx.peer = MaskingPeer(peer, call)
    await call.prepare_masks()
    try:
        return await _run(call, spec)
    finally:
        ctx.peer = peer
        call.forget_secrets()


async def _run(call: Call, spec: Spec) -> dict[str, Any]:
    """Runs the handler for the call's caller (whose authority each of its writes checks
    again), or with an idempotency key replays the result of the first call that used it."""
    caller = Caller(call.ctx.principal.token_id, call.user_id, call.tenant)
    with call.cloud.acting(caller):
        return await _run_once(call, spec)


async def _run_once(call: Call, spec: Spec) -> dict[str, Any]:
    key = call.args.get("idempotency_key")
    if key is None or not spec.mutates:
        return await spec.handler(call)
    digest = arguments_digest({k: v for k, v in call.args.items() if k != "idempotency_key"})
    claim = Claim(call.user_id, spec.name, key)
    replayed = await _replay_or_claim(call, claim, digest)
    if replayed is not None:
        return replayed
    try:
        with call.cloud.claiming(claim):
            result = await spec.handler(call)
    except StoreInDoubt:
        # The change may have been made: the key stays claimed (marked CHANGED if it was),
        # so a retry is refused rather than run a second time.
        await _settle(call, claim)
        raise
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _release(call, claim)
        raise
    try:
        await _record(call, claim, result)
    except BaseException as exc:
        # Nothing of the call runs any more, so its key must not read as running.  A store
        # that cannot keep the record costs only a retry's replay: the client gets its result.
        await _settle(call, claim)
        if not isinstance(exc, StoreUnavailable):
            raise
        log.warning("the result of %s under an idempotency key was not recorded", spec.name)
    return result


async def _record(call: Call, claim: Claim, result: dict[str, Any]) -> None:
    """The result kept for a retry with the same key, with every secret of the tenant masked,
    whoever the caller."""
    masks = await masks_for(call.tenant.id, await call.cloud.secret_values(call.tenant.id))
    async with call.cloud.store.transaction() as tx:
        await tx.idempotency.finish(claim, _frozen(masks, result), call.cloud.clock())


# A key whose first call is still running.  A client that times out and retries while the
# first call still runs (or waits on the user at a prompt) would otherwise run the call twice;
# the retry is refused instead.  A claim still RUNNING after CLAIM_SECONDS has committed no
# change (a change marks the key CHANGED in its own commit): its process stopped, or it waits
# at a prompt.  A retry may take it over and run the call; the first call, should it go on,
# then finds its claim gone at its first change, and makes none (`Cloud.transaction`).
CLAIM_SECONDS = 600.0
STILL_RUNNING = (
    "A call with this idempotency_key is still running, so this one changed nothing; retry "
    "with the same key once it has finished to get its result."
)
# A key whose first call made its change but left no result to replay.
CHANGED_UNRECORDED = (
    "A call with this idempotency_key already made its change but its result was not kept, "
    "so this one changed nothing; check the current state before trying again with a new key."
)


async def _replay_or_claim(call: Call, claim: Claim, digest: str) -> dict[str, Any] | None:
    """The stored result of the key's first call, if there was one with these arguments;
    otherwise None, with the key claimed for this call.  The claim is an insert that only one
    writer can make (or the take-over of a stale claim, an update only one can make), so two
    calls can never both change anything under one key."""
    now = call.cloud.clock()
    async with call.cloud.store.transaction() as tx:
        repo = tx.idempotency
        if await repo.claim(claim, digest, now):
            return None
        found = await repo.get(claim.user_id, claim.tool, claim.key)
        assert found is not None  # the claim lost to it, in this same write
        stale = is_running(found.result) and found.created_at < now - CLAIM_SECONDS
        if stale and await repo.take_over(claim, digest, now, found.result, now - CLAIM_SECONDS):
            return None
    return _stored(found, digest, now)


def _stored(found: IdempotencyRecord, digest: str, now: float) -> dict[str, Any]:
    if found.arguments_digest != digest:
        raise ToolError(
            "This idempotency_key was already used with other arguments; use "
            "a new key for a different request."
        )
    # A call that changed something may still be running (a deploy commits each stage), until
    # its claim is so old that its process must have stopped.
    recent = found.created_at >= now - CLAIM_SECONDS
    if is_running(found.result) or (is_changing(found.result) and recent):
        raise ToolError(STILL_RUNNING)
    if is_changed(found.result):
        raise ToolError(CHANGED_UNRECORDED)
    thawed: dict[str, Any] = _thaw(orjson.loads(found.result))
    return thawed


async def _release(call: Call, claim: Claim) -> None:
    """A call that failed before changing anything (or ended its round to ask the client
    something) leaves its key free, so that a retry runs it again; one that changed something
    leaves it marked CHANGED."""
    async with call.cloud.store.transaction() as tx:
        await tx.idempotency.release(claim)
        await tx.idempotency.settle(claim)


async def _settle(call: Call, claim: Claim) -> None:
    """The key of a call that ended after its change marked CHANGED, if the store answers:
    else it stays CHANGING, which reads as CHANGED once old.  Shielded: it runs as a call is
    cut short too."""
    try:
        with anyio.CancelScope(shield=True):
            async with call.cloud.store.transaction() as tx:
                await tx.idempotency.settle(claim)
    except StoreUnavailable:
        log.warning(
            "the idempotency key of a call that ended after its change was not marked so; "
            "retries are told it still runs until the claim is %.0f s old",
            CLAIM_SECONDS,
        )


def _frozen(masks: Masks, result: dict[str, Any]) -> bytes:
    """The result as its idempotency record keeps it, with no secret in it: a `Secret` field
    becomes a note that it was shown once (key material is shown once, and a retry is not
    a second showing), and a secret value inside other text is masked, whoever the caller."""
    if masks is not NO_MASKS and _mentions(result, masks.encoded):
        result = _scrubbed(result, masks.plain)
    return orjson.dumps(result, default=_freeze)


def _scrubbed(value: Any, values: SecretMatcher) -> Any:
    """`value` with every secret value inside its strings replaced by the marker."""
    if isinstance(value, str):
        return values.sub(value, MARKER)
    if isinstance(value, dict):
        return {k: _scrubbed(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, values) for v in value]
    return value


# What a retry shows in place of a secret field of the first call's result.
SHOWN_ONCE = (
    "Shown once, in the result of the first call with this idempotency_key; a retry does "
    "not show it again."
)
_SHOWN_ONCE_KEY = "$shown_once"


def _freeze(value: Any) -> Any:
    if isinstance(value, Secret):
        return {_SHOWN_ONCE_KEY: True}
    raise TypeError(type(value).__name__)


def _thaw(value: Any) -> Any:
    """A stored result as the retry returns it.  Records written before secrets were left
    out of them hold {"$secret": value}: that value is not shown again either."""
    if isinstance(value, dict):
        if set(value) in ({_SHOWN_ONCE_KEY}, {"$secret"}):
            return SHOWN_ONCE
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_thaw(v) for v in value]
    return value
