"""Each of the project's services SIGKILLed under its own traffic, then restarted at once.

One platform per pattern, as real processes on the real MongoDB-protocol and MinIO servers,
with devplane routing by the chart's own Triggers: uploads (minio-source, image-processor),
the order saga (products-api, orders-api, workflow-launcher, order-steps) and the fan-out
(bulk-jobs, item-processor, job-aggregator, dead-letter). Steady traffic runs through each
platform while its services are killed one after the other, each started again as a
container runtime would. Then what a user would see is checked: every acknowledged request
has its effect exactly once, every event devplane accepted was delivered or dead-lettered,
and each service answers again.

The services run with their crash-recovery timers shortened (QUICK), so that recovery fits a
test: leases left behind by a killed process expire in seconds, sweeps run every second; and
devplane retries for longer than a restart takes. What the defaults do instead is in
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess, MinioServer, MongoServer, free_port
from minio import Minio
from minio_source.setup import apply as setup_minio

from tests.fanout.conftest import DOOMED, Plane, products
from tests.image_processor.corpus import encode, marked
from tests.minio_source.servers import setup_settings, source_env, webhook_minio
from tests.reliability.harness import (
    SETTLE_SECONDS,
    Outcomes,
    chart_values,
    delivery,
    kill_and_restart,
    logged_events,
    report,
    steady,
)
from tests.reliability.services import deployables
from tests.saga.conftest import Platform
from tests.support.processes import ProcessGroup, shared_env
from tests.support.sinks import EventSink
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

UPLOADS = ("minio-source", "image-processor")
SAGA = ("products-api", "orders-api", "workflow-launcher", "order-steps")
FANOUT = ("bulk-jobs", "item-processor", "job-aggregator", "dead-letter")

# Retries that outlast a restart on a busy machine (linear, 26 s in all); a killed handler's
# idempotency lease (5 s) runs out while its process restarts.
POLICY = delivery(retry=14, delay="PT0.25S", timeout="PT10S")
QUICK = {
    "LOG_LEVEL": "WARNING",
    "MONGO_TIMEOUT_SECONDS": "3",
    "IDEMPOTENCY_LEASE_SECONDS": "5",
    "OUTBOX_SWEEP_INTERVAL_SECONDS": "1",
    "OUTBOX_GRACE_SECONDS": "2",
    "EMISSION_SLICE_SECONDS": "2",
    "EMISSION_LEASE_SECONDS": "6",
    "RESUME_INTERVAL_SECONDS": "1",
    "COMPLETION_SWEEP_SECONDS": "1",
    "SWEEP_INTERVAL_SECONDS": "1",
    "REPAIR_AFTER_SECONDS": "5",
    "FANIN_RETRY_SECONDS": "0.5",
}
LEAD_SECONDS = 1.5  # traffic before each kill, and after the last restart
FINAL = {"delivered", "dead-lettered"}

PRODUCT_CREATED = "io.knative-playbook.product.created.v1"
ORDER_PLACED = "io.knative-playbook.order.placed.v1"
ORDER_COMPLETED = "io.knative-playbook.order.completed.v1"
JOB_COMPLETED = "io.knative-playbook.job.completed.v1"
PROCESSED = "io.knative-playbook.image.processed.v1"


def test_every_service_that_takes_traffic_is_killed_by_a_scenario() -> None:
    """A new chart function fails here until a scenario below kills it (devplane: test_delivery)."""
    assert set(deployables()) - {"devplane"} == {*UPLOADS, *SAGA, *FANOUT}


async def kill_each(
    processes: list[FunctionProcess], gates: Mapping[str, Callable[[], Awaitable[None]]]
) -> dict[str, dict[str, float]]:
    """Kill and restart each process in turn, traffic running; when each was back and ready.

    A process named in `gates` is killed only once its gate returns: once traffic reaches it.
    """
    restarts: dict[str, dict[str, float]] = {}
    for process in processes:
        await asyncio.sleep(LEAD_SECONDS)
        if process.name in gates:
            await gates[process.name]()
        began = time.monotonic()
        recovered = await kill_and_restart(process)
        restarts[process.name] = {"at": began + recovered, "recover_s": round(recovered, 2)}
    await asyncio.sleep(LEAD_SECONDS)
    return restarts


# A stream of requests: send(seq) -> (key, status), the statuses that acknowledge, the pace.
Sender = tuple[Callable[[int], Awaitable[tuple[str, int | None]]], set[int], float]


async def under_traffic(
    senders: dict[str, Sender],
    victims: list[FunctionProcess],
    gates: Mapping[str, Callable[[], Awaitable[None]]] | None = None,
) -> tuple[dict[str, Outcomes], dict[str, dict[str, float]]]:
    """Run each sender steadily while every victim is killed and restarted in turn."""
    stop = asyncio.Event()
    streams = {
        name: asyncio.create_task(steady(send, stop, ok, interval))
        for name, (send, ok, interval) in senders.items()
    }
    try:
        restarts = await kill_each(victims, gates or {})
    finally:
        stop.set()
    return {name: await task for name, task in streams.items()}, restarts


async def settled(
    client: httpx.AsyncClient, plane_url: str
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Once no delivery is pending or retrying: the events logged, and deliveries by outcome."""

    async def quiet() -> tuple[list[dict[str, Any]], Counter[str]] | None:
        events = await logged_events(client, plane_url)
        outcomes = Counter(d["outcome"] for e in events for d in e["deliveries"])
        return None if outcomes["pending"] or outcomes["retrying"] else (events, outcomes)

    return await wait_for(quiet, "devplane to settle every delivery", within=SETTLE_SECONDS)


async def start_together(
    group: ProcessGroup,
    env: dict[str, str],
    envs: dict[str, dict[str, str]],
    *,
    dead_letter_url: str | None = None,
    fixed_ports: dict[str, int] | None = None,
) -> tuple[FunctionProcess, dict[str, FunctionProcess]]:
    """devplane routing to the services named in `envs` (each with its environment), all
    started at once, and ready. `env` is devplane's; the dead-letter sink defaults to the
    `dead-letter` service; services get free ports but those in `fixed_ports`."""
    modules = deployables()
    plane_port = free_port()
    ports = {name: free_port() for name in envs} | (fixed_ports or {})
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    values = chart_values(
        group.root / "values.json",
        urls,
        dead_letter_url=dead_letter_url or urls["dead-letter"],
        policy=POLICY,
    )
    sink = {"K_SINK": f"http://127.0.0.1:{plane_port}"}
    # Started side by side: each start waits for its own process to listen.
    plane, *started = await asyncio.gather(
        asyncio.to_thread(
            group.start_devplane, plane_port, env, values, DEVPLANE_EVENT_LOG_SIZE="10000"
        ),
        *(
            asyncio.to_thread(group.start, name, modules[name], ports[name], {**own, **sink})
            for name, own in envs.items()
        ),
    )
    await asyncio.to_thread(group.wait_ready, 60)
    return plane, dict(zip(envs, started, strict=True))


def event_figures(events: list[dict[str, Any]], outcomes: Counter[str]) -> dict[str, Any]:
    deliveries = [d for e in events for d in e["deliveries"]]
    return {
        "events_accepted": len(events),
        "deliveries": len(deliveries),
        "delivered": outcomes["delivered"],
        "dead_lettered": outcomes["dead-lettered"],
        "deliveries_retried": sum(1 for d in deliveries if d["attempts"] > 1),
    }


def recovery(restarts: dict[str, dict[str, float]], **answered: float | None) -> dict[str, Any]:
    """Per service: seconds from SIGKILL to ready, and from ready to its next acknowledgement."""
    figures: dict[str, Any] = {}
    for name, restart in restarts.items():
        figures[name] = {"ready_after_kill_s": restart["recover_s"]}
        if name in answered:
            first = answered[name]
            figures[name]["first_ack_after_ready_s"] = None if first is None else round(first, 2)
    return figures


def ids_by_subject(events: list[dict[str, Any]], event_type: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for event in events:
        if event["type"] == event_type:
            found.setdefault(event["subject"], set()).add(event["id"])
    return found


async def test_uploads_survive_minio_source_and_image_processor_being_killed(
    tmp_path: Path, mongo_server: MongoServer, mongo_db_name: str, mongo_db: Any
) -> None:
    sink = EventSink()
    await sink.start()
    source_port = free_port()
    server = webhook_minio(tmp_path, source_port)
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(setup_minio, setup_settings(server), wait=30)
        env = {**shared_env(mongo_server.url, mongo_db_name, server), **QUICK}
        with ProcessGroup(tmp_path) as group:
            plane, services = await start_together(
                group,
                env,
                {"image-processor": env, "minio-source": {**source_env(server), **QUICK}},
                dead_letter_url=sink.url,
                fixed_ports={"minio-source": source_port},
            )
            source, processor = services["minio-source"], services["image-processor"]
            await uploads_scenario(server, source, processor, plane.url, mongo_db, sink)
    finally:
        await asyncio.to_thread(server.stop)
        await sink.stop()


async def uploads_scenario(
    server: MinioServer,
    source: FunctionProcess,
    processor: FunctionProcess,
    plane_url: str,
    db: Any,
    sink: EventSink,
) -> None:
    minio = Minio(server.endpoint, server.access_key, server.secret_key, secure=False)
    picture = encode(marked((320, 240)), "JPEG")

    async def upload(seq: int) -> tuple[str, int | None]:
        key = f"kill/{seq}.jpg"
        # MinIO acknowledges the upload; its webhook queue takes it to minio-source from there.
        await asyncio.to_thread(minio.put_object, "uploads", key, io.BytesIO(picture), len(picture))
        return key, 200

    async with httpx.AsyncClient(timeout=10) as client:
        sent, restarts = await under_traffic({"uploads": (upload, {200}, 0.2)}, [source, processor])
        acked = sent["uploads"].acked

        async def all_recorded() -> bool:
            found = await db["images"].count_documents({"key": {"$in": acked}})
            return bool(found >= len(acked))

        await wait_for(all_recorded, "a record of every upload", within=SETTLE_SECONDS)
        events, outcomes = await settled(client, plane_url)

    records = await db["images"].find({"key": {"$in": acked}}).to_list()
    per_key = Counter(r["key"] for r in records)
    assert {k for k, n in per_key.items() if n != 1} == set(), "one record per upload"
    assert {r["status"] for r in records} == {"processed"}
    renditions = [r2["key"] for r in records for r2 in r["renditions"]]
    stored = await asyncio.to_thread(
        lambda: {
            str(o.object_name)
            for o in minio.list_objects("processed", prefix="processed/kill/", recursive=True)
        }
    )
    assert len(renditions) == 2 * len(acked) and set(renditions) == stored
    assert set(outcomes) <= FINAL, f"deliveries neither delivered nor dead-lettered: {outcomes}"
    assert outcomes["dead-lettered"] == len(sink.events) == 0, "retries outlast each restart"
    replies = ids_by_subject(events, PROCESSED)
    assert {k: len(replies.get(f"uploads/{k}", ())) for k in acked} == dict.fromkeys(acked, 1)
    report(
        "service-kill-uploads",
        {
            "uploads_acked": len(acked),
            **event_figures(events, outcomes),
            "services": recovery(restarts),
        },
    )


async def test_the_order_saga_survives_each_of_its_services_being_killed(
    tmp_path: Path,
    mongo_server: MongoServer,
    minio_server: MinioServer,
    mongo_db_name: str,
    mongo_db: Any,
) -> None:
    sink = EventSink()
    await sink.start()
    env = {
        **shared_env(mongo_server.url, mongo_db_name, minio_server),
        **QUICK,
        "WORKFLOW_BACKEND": "devplane",
    }
    try:
        with ProcessGroup(tmp_path) as group:
            plane, services = await start_together(
                group, env, dict.fromkeys(SAGA, env), dead_letter_url=sink.url
            )
            urls = {name: process.url for name, process in services.items()}
            async with httpx.AsyncClient(timeout=30) as client:
                platform = Platform(urls, plane.url, mongo_db, client)
                await saga_scenario(platform, [services[name] for name in SAGA], sink)
    finally:
        await sink.stop()


async def saga_scenario(
    platform: Platform, victims: list[FunctionProcess], sink: EventSink
) -> None:
    client, urls = platform.client, platform.urls
    stock = 100_000
    item = await platform.product(stock=stock)
    run = uuid.uuid4().hex[:8]

    async def create_product(seq: int) -> tuple[str, int | None]:
        sku = f"KILL-{run}-{seq}"
        product = {"sku": sku, "name": f"Item {seq}", "price": "9.99", "currency": "EUR"}
        response = await client.post(f"{urls['products-api']}/products", json=product)
        return sku, response.status_code

    async def place_order(seq: int) -> tuple[str, int | None]:
        response = await client.post(
            f"{urls['orders-api']}/orders",
            json={
                "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
                "lines": [{"sku": item["sku"], "quantity": 1}],
                "payment_token": "tok_approve",
            },
        )
        accepted = response.status_code == 202
        return (response.json()["id"] if accepted else f"#{seq}"), response.status_code

    sent, restarts = await under_traffic(
        {"products": (create_product, {201}, 0.25), "orders": (place_order, {202}, 1.0)}, victims
    )
    made, placed = sent["products"], sent["orders"]
    db = platform.db
    # A request cut off by a kill may still have been stored: it must complete all the same.
    stored = [str(o["_id"]) async for o in db["orders"].find({}, {"_id": 1})]
    assert set(placed.acked) <= set(stored), "an acknowledged order is lost"
    orders = await platform.all_finished(stored, within=SETTLE_SECONDS * 2)
    events, outcomes = await settled(client, platform.devplane)

    # Every acknowledged product stored once, readable, announced.
    found = await db["products"].find({"sku": {"$in": made.acked}}, {"sku": 1}).to_list()
    assert sorted(p["sku"] for p in found) == sorted(made.acked), "one product per 201"
    announced = ids_by_subject(events, PRODUCT_CREATED)
    assert {p["sku"]: len(announced.get(str(p["_id"]), ())) for p in found} == dict.fromkeys(
        made.acked, 1
    )
    for product in found[:: max(1, len(found) // 10)]:
        response = await client.get(f"{urls['products-api']}/products/{product['_id']}")
        assert response.status_code == 200, response.text
    # Every order completed once: one workflow, one charge, one invoice, one unit of stock.
    assert Counter(o["status"] for o in orders) == {"COMPLETED": len(stored)}
    for name, event_type in (("placed", ORDER_PLACED), ("completed", ORDER_COMPLETED)):
        ids = ids_by_subject(events, event_type)
        assert {o: len(ids.get(o, ())) for o in stored} == dict.fromkeys(stored, 1), (
            f"one order.{name} event per order"
        )
    payments = await db["payments"].find({"order_id": {"$in": stored}}).to_list()
    kinds = Counter((p["order_id"], p["kind"]) for p in payments)
    assert kinds == Counter({(o, "charge"): 1 for o in stored}), "one charge per order"
    assert await db["invoices"].count_documents({"_id": {"$in": stored}}) == len(stored)
    assert (await platform.get_product(item["id"]))["stock"] == stock - len(stored)
    assert set(outcomes) <= FINAL, f"deliveries neither delivered nor dead-lettered: {outcomes}"
    assert outcomes["dead-lettered"] == len(sink.events) == 0, "retries outlast each restart"
    workflows = [await platform.workflow(order_id) for order_id in stored]
    step_retries = sum(
        len(node["attempts"]) - 1 for w in workflows if w for node in w["nodes"] if node["attempts"]
    )
    answered = {
        "products-api": made.first_ack_after(restarts["products-api"]["at"]),
        "orders-api": placed.first_ack_after(restarts["orders-api"]["at"]),
    }
    assert None not in answered.values(), f"not answering after its restart: {answered}"
    report(
        "service-kill-saga",
        {
            "products_acked": len(made.acked),
            "products_refused": made.refused,
            "products_unanswered": made.errors,
            "orders_acked": len(placed.acked),
            "orders_stored": len(stored),
            "orders_refused": placed.refused,
            "orders_unanswered": placed.errors,
            **event_figures(events, outcomes),
            "workflow_steps_retried": step_retries,
            "services": recovery(restarts, **answered),
        },
    )


async def test_bulk_jobs_survive_each_fanout_service_being_killed(
    tmp_path: Path,
    mongo_server: MongoServer,
    minio_server: MinioServer,
    mongo_db_name: str,
    mongo_db: Any,
) -> None:
    env = {**shared_env(mongo_server.url, mongo_db_name, minio_server), **QUICK}
    envs = {name: env for name in FANOUT}
    envs["item-processor"] = {**env, "FAULT_FAIL_SKU_PATTERN": f"{DOOMED}-.*"}
    with ProcessGroup(tmp_path) as group:
        plane, services = await start_together(group, env, envs)
        minio = Minio(
            minio_server.endpoint,
            minio_server.access_key,
            minio_server.secret_key,
            secure=False,
        )
        async with httpx.AsyncClient(timeout=30) as client:
            fanout = Plane(plane, services, client, mongo_db, minio)
            await fanout_scenario(fanout, [services[name] for name in FANOUT])


ITEMS = 8
DOOMED_INDEX = 3  # item-processor always answers 503 for it: it ends in the dead-letter sink


async def fanout_scenario(plane: Plane, victims: list[FunctionProcess]) -> None:
    client = plane.client
    run = uuid.uuid4().hex[:8]
    prefixes: dict[str, str] = {}
    with_doomed: set[str] = set()
    # Jobs carry a doomed item until dead-letter is killed: its retries (the whole budget)
    # bring dead letters during that kill, and later jobs need not wait for a budget to run out.
    dooming = asyncio.Event()
    dooming.set()

    async def submit(seq: int) -> tuple[str, int | None]:
        prefix = f"K{run}-{seq}-"
        records = products(prefix, ITEMS)
        doomed = dooming.is_set()
        if doomed:
            records[DOOMED_INDEX]["sku"] = f"{DOOMED}-{prefix}"
        response = await client.post(f"{plane.jobs_url}/jobs", json={"items": records})
        if response.status_code != 202:
            return f"#{seq}", response.status_code
        job_id = str(response.json()["id"])
        prefixes[job_id] = prefix
        if doomed:
            with_doomed.add(job_id)
        return job_id, response.status_code

    letters_url = f"{plane.functions['dead-letter'].url}/dead-letters"
    params: dict[str, str | int] = {"type": "io.knative-playbook.item.requested.v1", "limit": 500}

    async def letters() -> Counter[str]:
        found = (await client.get(letters_url, params=params)).json()["items"]
        return Counter(letter["event_id"] for letter in found)

    letters_before_kill = 0

    async def letters_flowing() -> None:
        nonlocal letters_before_kill
        first = await wait_for(letters, "a first dead letter", within=SETTLE_SECONDS)
        letters_before_kill = sum(first.values())
        dooming.clear()

    sent, restarts = await under_traffic(
        {"jobs": (submit, {202}, 1.0)}, victims, {"dead-letter": letters_flowing}
    )
    jobs = sent["jobs"]
    finished = {job_id: await plane.completed(job_id, SETTLE_SECONDS) for job_id in jobs.acked}
    events, outcomes = await settled(client, plane.devplane.url)

    failing = {j: int(j in with_doomed) for j in jobs.acked}
    assert {
        j: (job["status"], job["total"], job["succeeded"], job["failed"])
        for j, job in finished.items()
    } == {j: ("COMPLETED", ITEMS, ITEMS - failing[j], failing[j]) for j in jobs.acked}
    for job_id in jobs.acked:
        skus = {"$regex": f"^{prefixes[job_id]}"}
        stored = await plane.db["products"].count_documents({"sku": skus})
        assert stored == ITEMS - failing[job_id], "one product per processed item"
        failed = await plane.results(job_id, "failed")
        assert [r["index"] for r in failed] == [DOOMED_INDEX] * failing[job_id]
    doomed = [f"{job_id}:{DOOMED_INDEX}" for job_id in jobs.acked if failing[job_id]]
    stored_letters = await letters()
    assert {i: stored_letters[i] for i in doomed} == dict.fromkeys(doomed, 1), (
        "one dead letter per doomed item"
    )
    completions = ids_by_subject(events, JOB_COMPLETED)
    assert {j: len(completions.get(j, ())) for j in jobs.acked} == dict.fromkeys(jobs.acked, 1)
    assert set(outcomes) <= FINAL, f"deliveries neither delivered nor dead-lettered: {outcomes}"
    lettered = {e["id"] for e in events for d in e["deliveries"] if d["outcome"] == "dead-lettered"}
    assert set(doomed) <= lettered
    assert all(i.endswith(f":{DOOMED_INDEX}") for i in lettered), "only doomed items dead-lettered"
    answered = jobs.first_ack_after(restarts["bulk-jobs"]["at"])
    assert answered is not None, "bulk-jobs accepted no job after its restart"
    report(
        "service-kill-fanout",
        {
            "jobs_acked": len(jobs.acked),
            "jobs_refused": jobs.refused,
            "jobs_unanswered": jobs.errors,
            "items": len(jobs.acked) * ITEMS,
            "doomed_items": len(doomed),
            "dead_letters_stored_before_its_kill": letters_before_kill,
            **event_figures(events, outcomes),
            "services": recovery(restarts, **{"bulk-jobs": answered}),
        },
    )
