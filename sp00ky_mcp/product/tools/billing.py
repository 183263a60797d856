"""Tools of the 'billing' area (scopes billing:read and billing:write)."""

from __future__ import annotations

from typing import Any

from ..cloud import billing
from .base import STR, TIME, Call, Spec, nullable, obj

COUNT = {"type": "integer", "minimum": 0}
USED = obj({"used": COUNT, "limit": COUNT})
PLAN_NAME = {"type": "string", "enum": list(billing.PLAN_NAMES)}
LIMITS = obj({metric: COUNT for metric, _ in billing.METRICS})
PLAN = obj({"plan": PLAN_NAME, "price_usd_per_month": COUNT, "limits": LIMITS})
ROLE_NOTE = (
    "In a team only an admin or owner may do this; in your personal tenant you are the owner."
)
SINGLE_USE = (
    "The URL's id is single use and expires after 24 hours: give the URL to the user "
    "to open once, and create a new session if it was used or expired."
)
SESSION = {
    "session_id": STR,
    "url": {"type": "string", "format": "uri"},
    "tenant_id": STR,
    "expires_at": TIME,
    "single_use": {"type": "boolean", "const": True},
}


async def get_usage(call: Call) -> dict[str, Any]:
    return await billing.usage(call.cloud, call.tenant)


GET_USAGE = Spec(
    name="get_usage",
    scope="billing:read",
    title="Get usage",
    description=(
        "Show the tenant's plan and its usage against the plan's limits, counted from "
        "its real resources: projects, services, total replicas, deployments this "
        "calendar month (UTC), backups and their total size, custom domains, env vars, "
        "and team members plus pending invitations. Also lists every plan with its "
        "price and limits. Use it before changing plans or when a limit is reached."
    ),
    arguments={},
    required=(),
    output=obj(
        {
            "tenant_id": STR,
            "tenant_name": STR,
            "plan": PLAN_NAME,
            "price_usd_per_month": COUNT,
            "period": obj({"start": TIME, "end": TIME}),
            "usage": obj({metric: USED for metric, _ in billing.METRICS}),
            "over_limit": {"type": "array", "items": STR},
            "plans": {"type": "array", "items": PLAN},
        }
    ),
    handler=get_usage,
    read_only=True,
    idempotent=True,
)


async def create_checkout_session(call: Call) -> dict[str, Any]:
    return await billing.checkout(call.cloud, call.tenant, call.user_id, call.args["plan"])


CREATE_CHECKOUT_SESSION = Spec(
    name="create_checkout_session",
    scope="billing:write",
    title="Create a checkout session",
    description=(
        "Create a checkout URL where the user enters payment details to move the "
        "tenant to a paid plan (pro or team). Use it when the user wants to upgrade "
        "and pay; it is refused if the tenant already has that plan or uses more than "
        "the plan allows. " + SINGLE_USE + " " + ROLE_NOTE
    ),
    arguments={"plan": {**PLAN_NAME, "description": "The paid plan to buy."}},
    required=("plan",),
    output=obj({**SESSION, "plan": PLAN_NAME, "price_usd_per_month": COUNT}),
    handler=create_checkout_session,
)


async def create_billing_portal_session(call: Call) -> dict[str, Any]:
    return await billing.portal(call.cloud, call.tenant, call.user_id)


CREATE_BILLING_PORTAL_SESSION = Spec(
    name="create_billing_portal_session",
    scope="billing:write",
    title="Create a billing portal session",
    description=(
        "Create a billing-portal URL where the user sees invoices, updates the payment "
        "method or cancels. Use it for anything about payments rather than plans. "
        + SINGLE_USE
        + " "
        + ROLE_NOTE
    ),
    arguments={},
    required=(),
    output=obj(SESSION),
    handler=create_billing_portal_session,
)


async def change_plan(call: Call) -> dict[str, Any]:
    return await billing.change_plan(call.cloud, call.tenant, call.user_id, call.args["plan"])


CHANGE_PLAN = Spec(
    name="change_plan",
    scope="billing:write",
    title="Change plan",
    description=(
        "Move the tenant to another plan at once, billed to the payment method on "
        "file. A downgrade is refused, naming each limit the current usage exceeds, "
        "until enough resources are removed. Asking for the current plan changes "
        "nothing (changed is false). " + ROLE_NOTE
    ),
    arguments={"plan": {**PLAN_NAME, "description": "The plan to move to."}},
    required=("plan",),
    output=obj(
        {
            "tenant_id": STR,
            "previous_plan": PLAN_NAME,
            "plan": PLAN_NAME,
            "price_usd_per_month": COUNT,
            "changed": {"type": "boolean"},
            "changed_at": nullable(TIME),
        }
    ),
    handler=change_plan,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (
        GET_USAGE,
        CREATE_CHECKOUT_SESSION,
        CHANGE_PLAN,
        CREATE_BILLING_PORTAL_SESSION,
    )
