"""fnkit: the function runtime every knative-playbook service is built on."""

from fnkit.app import Function
from fnkit.config import FunctionSettings
from fnkit.context import Context
from fnkit.deps import ContextDep
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
