"""fnkit: the function runtime every knative-playbook service is built on."""

from typing import TYPE_CHECKING, Any

from fnkit.app import Function
from fnkit.config import FunctionSettings
from fnkit.context import Context
from fnkit.errors import (
    BadEvent,
    Conflict,
    EmitError,
    FunctionError,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Rejected,
    Unavailable,
    UnsupportedMediaType,
)
from fnkit.events import CloudEvent, event_data, new_event

__all__ = [
    "BadEvent",
    "CloudEvent",
    "Conflict",
    "Context",
    "ContextDep",
    "EmitError",
    "Function",
    "FunctionError",
    "FunctionSettings",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Rejected",
    "Unavailable",
    "UnsupportedMediaType",
    "event_data",
    "new_event",
]


if TYPE_CHECKING:
    from fnkit.deps import ContextDep


def __getattr__(name: str) -> Any:
    # ContextDep is FastAPI's; imported on demand, so that a function without REST routes
    # never imports FastAPI.
    if name == "ContextDep":
        from fnkit.deps import ContextDep

        return ContextDep
    raise AttributeError(f"module 'fnkit' has no attribute {name!r}")
