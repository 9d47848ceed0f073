"""The labels and state sets the pages' JavaScript reads, from the same vocabularies the server
uses (calls.models, workorders.models), rendered into every page as JSON (base.html, #vocabulary):
a label or a state added there reaches the console and the wallboard without a second copy."""

from __future__ import annotations

from callcenter.calls.models import IVR_ROUTES, WAITING_STATES, WITH_AGENT, AgentActivity, CallState, Outcome, PauseReason
from workorders.models import OPEN, OrderStatus


def for_pages() -> dict:
    return {
        "call_states": CallState.labels(),
        "outcomes": Outcome.labels(),
        "waiting_states": list(WAITING_STATES),
        "with_agent": list(WITH_AGENT),  # on an agent's console: ringing there, or talking
        "agent_activities": AgentActivity.labels(),
        "pause_reasons": PauseReason.labels(),
        "ivr_routes": IVR_ROUTES,
        "order_statuses": OrderStatus.labels(),
        "open_orders": list(OPEN),
    }
