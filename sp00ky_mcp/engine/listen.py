"""`subscriptions/listen` (2026-07-28, basic/patterns/subscriptions): a POST whose reply is a
long-lived SSE stream of list-changed and resource-updated notifications.

The first message MUST be `notifications/subscriptions/acknowledged` naming the subset the
server honours; every notification carries the listen request's id in
`_meta["io.modelcontextprotocol/subscriptionId"]`; a server-initiated end sends a final result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from . import jsonrpc
from .errors import JsonRpcError, invalid_params
from .protocol import MAX_SUBSCRIPTIONS, MAX_URI_LENGTH
from .streams import EventStream

META_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
LIST_FLAGS = ("toolsListChanged", "promptsListChanged", "resourcesListChanged")
SseBody = Callable[[EventStream, int, bool, bool], AsyncIterator[bytes]]


@dataclass(slots=True, eq=False)
class Listener:
    request_id: jsonrpc.RequestId
    flags: frozenset[str]
    uris: frozenset[str]
    stream: EventStream

    def meta(self) -> dict[str, Any]:
        return {META_SUBSCRIPTION_ID: self.request_id}


def agreed_filter(
    params: dict[str, Any], offered: frozenset[str]
) -> tuple[frozenset[str], frozenset[str]]:
    wanted = params.get("notifications")
    if not isinstance(wanted, dict):
        raise invalid_params("'notifications' must be an object naming what to listen for.")
    flags = frozenset(f for f in LIST_FLAGS if wanted.get(f) is True and f in offered)
    uris = wanted.get("resourceSubscriptions", [])
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise invalid_params("'resourceSubscriptions' must be a list of resource URIs.")
    # The bounds of a handshake-era session's subscriptions hold for a listen stream too.
    if len(uris) > MAX_SUBSCRIPTIONS or any(len(u) > MAX_URI_LENGTH for u in uris):
        raise invalid_params(
            f"'resourceSubscriptions' may name at most {MAX_SUBSCRIPTIONS} URIs of at most "
            f"{MAX_URI_LENGTH} characters each."
        )
    honoured = frozenset(uris) if "resourceSubscriptions" in offered else frozenset()
    return flags, honoured


class Listeners:
    def __init__(self, offered: frozenset[str], capacity: int) -> None:
        self.offered = offered
        self.capacity = capacity
        self.active: set[Listener] = set()

    def open(self, request: jsonrpc.Request) -> Listener | JsonRpcError:
        try:
            flags, uris = agreed_filter(request.params, self.offered)
        except JsonRpcError as exc:
            return exc
        listener = Listener(request.id, flags, uris, EventStream("l", self.capacity))
        agreed: dict[str, Any] = {flag: True for flag in sorted(flags)}
        if uris:
            agreed["resourceSubscriptions"] = sorted(uris)
        self._send(listener, "notifications/subscriptions/acknowledged", {"notifications": agreed})
        self.active.add(listener)
        return listener

    def close(self, listener: Listener) -> None:
        self.active.discard(listener)
        listener.stream.close()

    def list_changed(self, flag: str, method: str) -> None:
        for listener in list(self.active):
            if flag in listener.flags:
                self._send(listener, method, {})

    def resource_updated(self, uri: str) -> None:
        for listener in list(self.active):
            if uri in listener.uris:
                self._send(listener, "notifications/resources/updated", {"uri": uri})

    def end_all(self) -> None:
        """Server-initiated end: a final result, then close (subscriptions, "Ending")."""
        for listener in list(self.active):
            result = {"resultType": "complete", "_meta": listener.meta()}
            listener.stream.publish(jsonrpc.encode_result(listener.request_id, result), final=True)
            self.close(listener)

    @staticmethod
    def _send(listener: Listener, method: str, params: dict[str, Any]) -> None:
        params = {**params, "_meta": listener.meta()}
        listener.stream.publish(jsonrpc.encode_notification(method, params))
