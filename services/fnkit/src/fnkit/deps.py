"""FastAPI dependency aliases for REST routes that live beside the event handlers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from fnkit.context import Context


def get_context(request: Request) -> Context[Any]:
    ctx: Context[Any] = request.app.state.ctx
    return ctx


ContextDep = Annotated[Context[Any], Depends(get_context)]
