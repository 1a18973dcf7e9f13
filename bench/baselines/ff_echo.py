"""functions-framework-python's CloudEvent functions, the baseline fnkit's echo is measured against.

Loaded by functions-framework with `--signature-type cloudevent`: `echo` on its default server
(Flask on gunicorn), `echo_async` in its `--asgi` mode (Starlette on uvicorn). Both read the
event's data, as fnkit's echo does; the framework answers 200 "OK" because its CloudEvent
signature has no reply event.
"""

from typing import Any


def echo(event: Any) -> None:
    event.data  # noqa: B018 - touch the data, as a real function would


async def echo_async(event: Any) -> None:
    event.data  # noqa: B018 - touch the data, as a real function would
