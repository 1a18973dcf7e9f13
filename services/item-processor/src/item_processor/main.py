"""item-processor: the app, as `fnkit-serve item_processor.main:app` serves it."""

from __future__ import annotations

from typing import Any, Final

from fnkit import BadEvent, CloudEvent, Context, Function, event_data
from products_api.outbox import ProductOutbox
from products_api.store import COLLECTION as PRODUCTS
from products_api.store import ProductStore

from item_processor.config import Settings
from item_processor.faults import Faults
from item_processor.products import ProductWriter
from item_processor.records import InvalidRecord, to_product

ITEM_REQUESTED: Final = "io.knative-playbook.item.requested.v1"
ITEM_PROCESSED: Final = "io.knative-playbook.item.processed.v1"
ITEM_FAILED: Final = "io.knative-playbook.item.failed.v1"

DESCRIPTION = """\
The fan-out's worker: one `io.knative-playbook.item.requested.v1` per bulk-job item, whose
`record` is a product. The record is tidied (whitespace, currency and tag case) and validated
by products-api's own model, then upserted by sku into products-api's collection. The reply
is `io.knative-playbook.item.processed.v1` (created, updated or unchanged), or, for a record
that is not a valid product, `io.knative-playbook.item.failed.v1` with the reason: a bad
record is a result, not an error. Trouble with MongoDB answers 503, so the broker retries.
"""


def create_app(settings: Settings | None = None) -> Function[Settings]:
    fn = Function(
        "item-processor",
        settings_class=Settings,
        settings=settings,
        mongo=True,
        description=DESCRIPTION,
    )
    state: dict[str, Any] = {}

    @fn.on_startup
    async def open_products(ctx: Context[Settings]) -> None:
        collection = ctx.db[PRODUCTS]
        # products-api's own index definitions (the unique sku above all); its outbox is
        # never started here: imports send no product events.
        unstarted = ProductOutbox(collection, ctx.emit, grace_seconds=0, interval_seconds=1)
        await ProductStore(collection, unstarted, ctx.event).create_indexes()
        state["writer"] = ProductWriter(
            collection,
            max_batch=ctx.settings.write_batch_max,
            merge_concurrency=ctx.settings.merge_concurrency,
        )
        state["faults"] = Faults(
            ctx.settings.fault_first_attempt_503_ratio, ctx.settings.fault_fail_sku_pattern
        )

    @fn.on(ITEM_REQUESTED)
    async def process_item(event: CloudEvent, ctx: Context[Settings]) -> CloudEvent:
        """One item: its product upserted, or the reason it is not a product."""
        job_id, index, record = _item(event_data(event))
        state["faults"].check(event.get_id(), record)
        reply_to = {"subject": event.get_subject(), "id": f"{event.get_id()}:result"}
        try:
            product = to_product(record)
        except InvalidRecord as bad:
            return ctx.event(
                ITEM_FAILED,
                {"job_id": job_id, "index": index, "reason": bad.reason, "errors": bad.errors},
                **reply_to,
            )
        upserted = await state["writer"].upsert(product)
        return ctx.event(
            ITEM_PROCESSED,
            {
                "job_id": job_id,
                "index": index,
                "sku": product.sku,
                "product_id": str(upserted.product_id),
                "change": upserted.change.value,
            },
            **reply_to,
        )

    return fn


def _item(data: Any) -> tuple[str, int, Any]:
    """(job_id, index, record) of an item.requested; BadEvent (400) if it is not one."""
    if not isinstance(data, dict):
        raise BadEvent("item.requested data must be a JSON object")
    job_id, index = data.get("job_id"), data.get("index")
    if not isinstance(job_id, str) or not job_id:
        raise BadEvent("item.requested data needs a string `job_id`")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise BadEvent("item.requested data needs an `index`: a whole number >= 0")
    if "record" not in data:
        raise BadEvent("item.requested data needs a `record`")
    return job_id, index, data["record"]


app = create_app()
