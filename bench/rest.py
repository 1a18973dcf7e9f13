"""REST: products-api's GET-by-id and POST against a bare handler making the same PyMongo call.

All servers run one process pinned to one core, on uvicorn with uvloop and httptools, against
the same real MongoDB-protocol server (FerretDB here; mongod where installed). The baseline,
bench/baselines/bare_rest.py, is a bare ASGI app with one AsyncMongoClient: the same `find_one`
by `_id` and `insert_one` of the same document (outbox entry included), the same JSON answers,
and nothing else. The ratio is what products-api's framework (fnkit, FastAPI), validation,
ETag, outbox relay (it posts every created event to the broker, staged beside the product
until sent) and metrics cost on top of the database call. A second baseline for creates, the
same bare handler with BARE_EMIT=1, also posts each event to the broker, without an outbox:
against it shows what the outbox's guarantee costs.

`wrk` (one thread, fixed connections) runs on the other core with the database server and a
broker stand-in (bench/baselines/bare_asgi.py as K_SINK); GETs cycle over seeded products,
POSTs create products with fresh skus (bench/wrk/rest.lua). Each target gets its own database
holding the same seeded products and the same indexes. Rounds are interleaved (every target
once per round, order rotated, a fresh server each time); ratios are medians of per-round
ratios. CPU per request is counted until products-api's outbox has sent every event of the
run, so work deferred past the answer is included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import psutil
from devplane.servers import MongoServer, mongo_server
from products_api.models import PRODUCT_EXAMPLE

from bench.common import (
    BENCH,
    RESULTS,
    VENV_BIN,
    Cores,
    Server,
    Target,
    header,
    load_average,
    median,
    pin_self,
    run_wrk,
    uvicorn_command,
    write_json,
    wrk_summary,
)

LUA: Final = BENCH / "wrk" / "rest.lua"
DB: Final = "bench_rest"
OPS: Final = ("get", "post")
GOAL: Final = 0.8  # issue 11: products-api >= 0.8x the bare handler
SAMPLE_ID_FILE: Final = "ids.txt"


@dataclass(frozen=True)
class Params:
    rounds: int = 5
    seconds: int = 10
    warmup: int = 2
    connections: int = 64
    products: int = 1000  # seeded, read round robin by the GET runs


@dataclass(frozen=True)
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # share of one core the server used while wrk ran
    server_us: float  # server CPU per request, until its outbox was empty
    db_us: float  # the database server's CPU per request, likewise
    sink_us: float  # the broker stand-in's CPU per request
    wrk_cpu: float  # share of one core wrk used
    requests: int
    timeouts: int
    drain_s: float  # after wrk stopped, until no product had an event left to send
    drained: bool  # False: events still pending when the harness stopped waiting


def targets() -> list[Target]:
    return [
        Target(
            "products-api",
            "products-api",
            (
                str(VENV_BIN / "fnkit-serve"),
                "products_api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
            ),
            note="fnkit-serve products_api.main:app (fnkit + FastAPI, GET by id and POST "
            "answered by fnkit.rest shortcuts ahead of FastAPI's routing, pydantic validation, "
            "ETag, outbox relay posting each created event to the broker, metrics, JSON logs "
            "at INFO)",
        ),
        Target(
            "bare",
            "bare ASGI + PyMongo",
            uvicorn_command("bench.baselines.bare_rest:app", lifespan=True),
            note="bench/baselines/bare_rest.py on uvicorn (uvloop, httptools): the same "
            "find_one / insert_one and JSON, no validation, no outbox sending, no metrics or logs",
        ),
        Target(
            "bare-emit",
            "bare ASGI + PyMongo + emit",
            uvicorn_command("bench.baselines.bare_rest:app", lifespan=True),
            env=(("BARE_EMIT", "1"),),
            note="the same bare handler with BARE_EMIT=1: after the insert, each create posts "
            "its event straight to the broker stand-in before answering (fnkit's HTTP client), "
            "with no outbox, so without the guarantee; POST only. The floor of storing and "
            "announcing a product, against which the outbox's own cost shows",
        ),
    ]


# The emitting baseline differs from the bare one only in creates.
OPS_OF: Final = {"bare-emit": ("post",)}


def _pin_process(pid: int, core: int | None) -> None:
    """Pin every thread of a running process (Go servers start theirs early)."""
    if core is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), {core})


def _cpu(pid: int) -> float:
    total = 0.0
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(pid)
        for proc in [parent, *parent.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def _request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _wait_ready(server: Server, product_id: str, timeout: float = 60.0) -> None:
    """Until a seeded product reads 200 (products-api answers 503 while it creates indexes)."""
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.target.label} exited:\n{server.tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if _request(server.port, "GET", f"/products/{product_id}")[0] == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{server.target.label} not ready after {timeout}s:\n{server.tail()}")


class Bench:
    """The database server, the broker stand-in, the seeded databases, and the runs."""

    def __init__(self, root: Path, cores: Cores, params: Params) -> None:
        self.root = root
        self.cores = cores
        self.params = params
        self.mongo: MongoServer = mongo_server(root)
        self.sink = Server(
            Target(
                "sink",
                "broker stand-in",
                uvicorn_command("bench.baselines.bare_asgi:app"),
            ),
            Cores(cores.load, cores.load),  # on the load generator's core, off the server's
        )
        self.ids: list[str] = []
        self.ids_file = root / SAMPLE_ID_FILE

    def database(self, key: str) -> str:
        return f"{DB}_{key.replace('-', '_')}"

    def env(self, key: str) -> dict[str, str]:
        return {
            "ENVIRONMENT": "dev",
            "LOG_LEVEL": "INFO",
            "MONGO_URL": self.mongo.url,
            "MONGO_DB": self.database(key),
            "K_SINK": f"http://127.0.0.1:{self.sink.port}/",
            # A send that failed under load is retried by the sweep: soon, so that runs end.
            "OUTBOX_SWEEP_INTERVAL_SECONDS": "5",
            "OUTBOX_GRACE_SECONDS": "2",
        }

    def start(self) -> None:
        self.mongo.start()
        assert self.mongo.process is not None
        _pin_process(self.mongo.process.pid, self.cores.load)
        self.sink.start()
        self.sink.wait_answered()
        asyncio.run(self.seed())
        self.ids_file.write_text("".join(f"{i}\n" for i in self.ids))

    def stop(self) -> None:
        self.sink.stop()
        self.mongo.stop()

    async def seed(self) -> None:
        """The same products, as products-api's own store writes them, in every target's database.

        Created with the store's `create` (the document exactly as a POST stores it), its event
        then taken out of the outbox as a sent one would be. Written with `insert_many`:
        popping each event would cost FerretDB a pass over the collection per product.
        """
        from fnkit import CloudEvent, new_event
        from products_api.models import PRODUCT_EXAMPLE, ProductIn
        from products_api.outbox import ProductOutbox
        from products_api.store import COLLECTION, ProductStore
        from pymongo import AsyncMongoClient

        async def no_emit(event: CloudEvent) -> None:
            return None

        def event(type: str, data: Any = None, **kw: Any) -> CloudEvent:
            return new_event(type, "/bench", data, **kw)

        class Unsent(ProductOutbox):
            def send_soon(self, doc_id: Any, pending: Any) -> None:
                return None

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.mongo.url, tz_aware=True)
        try:
            scratch = client[f"{DB}_scratch"][COLLECTION]
            relay = Unsent(scratch, no_emit, grace_seconds=60, interval_seconds=3600)
            store = ProductStore(scratch, relay, event)
            for n in range(self.params.products):
                await store.create(
                    ProductIn.model_validate(
                        {**PRODUCT_EXAMPLE, "sku": f"SEED-{n:05d}", "stock": n}
                    )
                )
            docs = [{**doc, "outbox": []} for doc in await scratch.find().sort("_id", 1).to_list()]
            await client.drop_database(f"{DB}_scratch")
            self.ids = [str(doc["_id"]) for doc in docs]
            for target in targets():
                collection = client[self.database(target.key)][COLLECTION]
                await ProductStore(collection, relay, event).create_indexes()
                for start in range(0, len(docs), 500):
                    await collection.insert_many(docs[start : start + 500])
        finally:
            await client.close()

    async def _pending(self, key: str) -> bool:
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.mongo.url)
        try:
            db = client[self.database(key)]
            # Creates' events wait staged beside the products; changes' in the products.
            if await db["products_outbox"].find_one({}, {"_id": 1}) is not None:
                return True
            pending = await db["products"].find_one({"outbox.0": {"$exists": True}}, {"_id": 1})
            return pending is not None
        finally:
            await client.close()

    async def _forget_created(self, key: str) -> None:
        from pymongo import AsyncMongoClient
        from pymongo.errors import OperationFailure

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.mongo.url)
        try:
            for attempt in range(60):
                try:
                    await client[self.database(key)]["products"].delete_many(
                        {"sku": {"$regex": "^B"}}
                    )
                    return
                except OperationFailure:  # SQLITE_BUSY while products-api's relay writes
                    if attempt == 59:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await client.close()

    def forget_created(self, key: str) -> None:
        """Remove the products a POST run created: every round starts with the seeded ones.

        FerretDB's writes by `_id` read the whole collection, so a collection growing from
        round to round would make later rounds slower for reasons of its own.
        """
        asyncio.run(self._forget_created(key))

    def drain(self, target: Target, timeout: float = 15.0) -> tuple[float, bool]:
        """Seconds until products-api's outbox has sent everything (0 for the baseline), and
        whether it had within `timeout`.

        Polled once a second: the query reads the whole collection on FerretDB.
        """
        if target.key != "products-api":
            return 0.0, True
        started = time.perf_counter()
        while asyncio.run(self._pending(target.key)):
            if time.perf_counter() - started > timeout:
                return time.perf_counter() - started, False
            time.sleep(1.0)
        return time.perf_counter() - started, True

    def wrk(self, port: int, op: str, seconds: int) -> tuple[dict[str, Any], float]:
        script_args = ["get", str(self.ids_file)] if op == "get" else ["post", _sku_prefix()]
        url = f"http://127.0.0.1:{port}"
        return run_wrk(self.cores, url, LUA, self.params.connections, seconds, *script_args)

    @contextlib.contextmanager
    def serving(self, target: Target) -> Iterator[Server]:
        server = Server(target, self.cores, env=self.env(target.key))
        server.start()
        try:
            _wait_ready(server, self.ids[0])
            yield server
        finally:
            server.stop()

    def measure(self, target: Target) -> dict[str, Sample]:
        """A fresh server: warm-up and run for GET, then for POST."""
        samples = {}
        assert self.mongo.process is not None
        db_pid, sink_pid = self.mongo.process.pid, self.sink.process.pid if self.sink.process else 0
        with self.serving(target) as server:
            for op in OPS_OF.get(target.key, OPS):
                self.wrk(server.port, op, self.params.warmup)
                self.drain(target)
                if op == "post":
                    self.forget_created(target.key)
                cpu_before = server.cpu_seconds()
                db_before, sink_before = _cpu(db_pid), _cpu(sink_pid)
                result, wrk_cpu = self.wrk(server.port, op, self.params.seconds)
                cpu_run = server.cpu_seconds()
                drain_s, drained = self.drain(target)
                cpu_after = server.cpu_seconds()
                db_after, sink_after = _cpu(db_pid), _cpu(sink_pid)
                seconds = result["duration_us"] / 1e6
                count = max(result["requests"], 1)
                samples[op] = Sample(
                    rps=result["requests"] / seconds,
                    p50_ms=result["p50_us"] / 1000,
                    p99_ms=result["p99_us"] / 1000,
                    server_cpu=(cpu_run - cpu_before) / seconds,
                    server_us=(cpu_after - cpu_before) / count * 1e6,
                    db_us=(db_after - db_before) / count * 1e6,
                    sink_us=(sink_after - sink_before) / count * 1e6,
                    wrk_cpu=wrk_cpu / seconds,
                    requests=result["requests"],
                    timeouts=result["timeouts"],
                    drain_s=drain_s,
                    drained=drained,
                )
                if op == "post":
                    self.forget_created(target.key)
        return samples

    def check_answers(self) -> None:
        """All answer a read with the same body and ETag, and a create with the same shape."""
        answers = {}
        for target in targets():
            with self.serving(target) as server:
                got = _request(server.port, "GET", f"/products/{self.ids[0]}")
                body = json.dumps({"sku": f"CHECK-{target.key}", **_EXAMPLE_REST})
                created = _request(server.port, "POST", "/products", body.encode())
                missing = _request(server.port, "GET", "/products/" + "0" * 24)
                answers[target.key] = (got, created, missing)
        api_get, api_post, _ = answers["products-api"]
        for key, (got, created, missing) in answers.items():
            if (api_get[0], json.loads(api_get[2]), api_get[1]["etag"]) != (
                got[0],
                json.loads(got[2]),
                got[1]["etag"],
            ):
                raise RuntimeError(f"GET answers differ: {api_get} {key}: {got}")
            shapes = [
                {k: v for k, v in json.loads(c[2]).items() if k not in _PER_CREATE}
                for c in (api_post, created)
            ]
            if (api_post[0], created[0]) != (201, 201) or shapes[0] != shapes[1]:
                raise RuntimeError(f"POST answers differ: {api_post} {key}: {created}")
            if missing[0] != 404:
                raise RuntimeError(f"unknown id: {key}: {missing}")


_PER_CREATE: Final = ("id", "sku", "created_at", "updated_at")
_EXAMPLE_REST: Final = {k: v for k, v in PRODUCT_EXAMPLE.items() if k != "sku"}


def _sku_prefix() -> str:
    return f"B{uuid.uuid4().hex[:10]}"


def run(params: Params) -> dict[str, Any]:
    cores = Cores.pick()
    pin_self(cores)
    load_before = load_average()
    chosen = targets()
    samples: dict[str, dict[str, list[Sample]]] = {
        t.key: {op: [] for op in OPS_OF.get(t.key, OPS)} for t in chosen
    }
    loads = [load_before]
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp:
        bench = Bench(Path(tmp), cores, params)
        try:
            bench.start()
            bench.check_answers()
            for round_no in range(params.rounds):
                shift = round_no % len(chosen)
                for target in chosen[shift:] + chosen[:shift]:
                    for op, sample in bench.measure(target).items():
                        samples[target.key][op].append(sample)
                        print(
                            f"round {round_no + 1}/{params.rounds} {target.label:<20} {op:<4} "
                            f"{sample.rps:7.0f} req/s  p50 {sample.p50_ms:6.2f} ms  "
                            f"p99 {sample.p99_ms:6.2f} ms  server {sample.server_us:5.0f} us/req "
                            f"({sample.server_cpu:4.0%})  db {sample.db_us:5.0f} us/req  "
                            f"wrk {sample.wrk_cpu:4.0%}  drain {sample.drain_s:.1f} s  "
                            f"load {load_average()}",
                            flush=True,
                        )
                    loads.append(load_average())
            flavour = bench.mongo.binary.resolve().name
        finally:
            bench.stop()
    payload = {
        "params": asdict(params),
        "cores": asdict(cores),
        "load_before": load_before,
        "load_after": load_average(),
        "loads": loads,
        "versions": _versions(flavour),
        "targets": {
            t.key: {
                "label": t.label,
                "note": t.note,
                "samples": {op: [asdict(s) for s in ops] for op, ops in samples[t.key].items()},
            }
            for t in chosen
        },
    }
    write_json("rest", payload)
    write_markdown(payload)
    return payload


def _versions(flavour: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "MongoDB-protocol server": flavour}
    for name in (
        "fnkit",
        "products-api",
        "fastapi",
        "starlette",
        "pydantic",
        "uvicorn",
        "uvloop",
        "httptools",
        "pymongo",
        "orjson",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split()
        found["wrk"] = out[1] if out[:1] == ["wrk"] else "?"
    return found


def _per_cpu(sample: dict[str, Any]) -> float:
    """Requests per CPU-second of the server (deferred outbox work included)."""
    return float(1e6 / sample["server_us"]) if sample["server_us"] else 0.0


def paired_ratio(
    payload: dict[str, Any], op: str, per_cpu: bool = False, baseline: str = "bare"
) -> float:
    """Median over rounds of products-api's figure over the baseline's."""
    api = payload["targets"]["products-api"]["samples"][op]
    bare = payload["targets"][baseline]["samples"][op]
    if per_cpu:
        return median([_per_cpu(a) / _per_cpu(b) for a, b in zip(api, bare, strict=True)])
    return median([a["rps"] / b["rps"] for a, b in zip(api, bare, strict=True)])


def summary(samples: list[dict[str, Any]]) -> dict[str, float]:
    return {
        **wrk_summary(samples, _per_cpu),
        "server_us": median([s["server_us"] for s in samples]),
        "db_us": median([s["db_us"] for s in samples]),
        "sink_us": median([s["sink_us"] for s in samples]),
        "drain_s": max(s["drain_s"] for s in samples),
    }


def write_markdown(payload: dict[str, Any]) -> None:
    cores = Cores(**payload["cores"])
    params = Params(**payload["params"])
    targets_ = payload["targets"]
    lines = header(
        "REST: products-api against a bare handler with the same PyMongo call, one core",
        cores,
        payload["load_before"],
        payload["load_after"],
        payload["versions"],
    )
    lines = [
        f"- Pinning: server on core {cores.server}; wrk, the database server, the broker "
        f"stand-in and the harness on core {cores.load}"
        if line.startswith("- Pinning") and cores.server is not None
        else line
        for line in lines
    ]
    lines += [
        f"- Parameters: wrk, 1 thread, {params.connections} connections, {params.seconds} s per "
        f"run after a {params.warmup} s warm-up, {params.rounds} rounds interleaved, a fresh "
        f"server per round; GET cycles over {params.products:,} seeded products, POST creates "
        "the README's example product with a new sku each time (bench/wrk/rest.lua); "
        "products-api logs at INFO and sends every created event to the broker stand-in",
        f"- Load average after each round: {', '.join(payload['loads'][1:])}",
        "",
        "| target | op | req/s (median) | min - max | p50 ms | p99 ms | server CPU "
        "| req per CPU-second | server CPU us/req | database CPU us/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    stats = {
        key: {op: summary(runs) for op, runs in entry["samples"].items()}
        for key, entry in targets_.items()
    }
    for op in OPS:
        for key, entry in targets_.items():
            if op not in stats[key]:
                continue
            s = stats[key][op]
            lines.append(
                f"| {entry['label']} | {op.upper()} | {s['rps']:,.0f} "
                f"| {s['rps_min']:,.0f} - {s['rps_max']:,.0f} | {s['p50_ms']:.2f} "
                f"| {s['p99_ms']:.2f} | {s['server_cpu']:.0%} | {s['per_cpu']:,.0f} "
                f"| {s['server_us']:,.0f} | {s['db_us']:,.0f} |"
            )
    lines += [
        "",
        "| products-api against the bare handler | by req/s | by req per CPU-second | goal |",
        "|---|---:|---:|---|",
    ]
    for op in OPS:
        by_rps, by_cpu = paired_ratio(payload, op), paired_ratio(payload, op, per_cpu=True)
        verdict = "met" if min(by_rps, by_cpu) >= GOAL else "missed"
        lines.append(
            f"| {op.upper()} | {by_rps:.2f}x | {by_cpu:.2f}x | >= {GOAL:.2f}x: {verdict} |"
        )
    emitting = "bare-emit" in targets_
    if emitting:
        by_rps = paired_ratio(payload, "post", baseline="bare-emit")
        by_cpu = paired_ratio(payload, "post", per_cpu=True, baseline="bare-emit")
        lines.append(
            f"| POST, against the bare handler that also emits | {by_rps:.2f}x | {by_cpu:.2f}x "
            "| (what the outbox's guarantee costs) |"
        )
    api_post, bare_post = stats["products-api"]["post"], stats["bare"]["post"]
    api_get, bare_get = stats["products-api"]["get"], stats["bare"]["get"]
    wrk_cpu = max(s["wrk_cpu"] for per_op in stats.values() for s in per_op.values())
    posts = targets_["products-api"]["samples"]["post"]
    undrained = sum(1 for s in posts if not s.get("drained", True))
    lines += [
        "",
        "Ratios are medians of per-round ratios. Server CPU is the share of its core the "
        "server used while wrk ran; req per CPU-second and the CPU per request count the "
        "server's CPU until its outbox had sent every event of the run, or for 15 s after "
        "wrk stopped (see below), the figure least "
        f"disturbed by the machine's other work. wrk used at most {wrk_cpu:.0%} of its core.",
        "",
        "Where the time goes: a read costs the database server "
        f"{bare_get['db_us']:,.0f} us of CPU against the bare handler's "
        f"{bare_get['server_us']:,.0f} us and products-api's {api_get['server_us']:,.0f} us; "
        "a create costs it "
        f"{bare_post['db_us']:,.0f} us (bare) and {api_post['db_us']:,.0f} us (products-api: "
        "the staged event's insert, the product's, the staged event's delete once sent, each "
        "shared with concurrent creates, and the outbox's sweeps) against the handlers' "
        f"{bare_post['server_us']:,.0f} us and {api_post['server_us']:,.0f} us. The broker "
        f"stand-in took {api_post['sink_us']:,.0f} us per products-api create. With the "
        "database server sharing the load generator's core, req/s is set by whichever core "
        "fills first; req per CPU-second compares the handlers alone. products-api's creates "
        "share their inserts (group commit), where the bare handler makes one `insert_one` "
        "per create: that, not a framework cheaper than none, is how a create can cost "
        "products-api less CPU than the bare handler.",
        *(
            [
                "",
                "The bare handler that also emits posts each created event to the broker "
                "stand-in before answering, with no outbox: "
                f"{stats['bare-emit']['post']['server_us']:,.0f} us of its CPU and "
                f"{stats['bare-emit']['post']['db_us']:,.0f} us of the database's per create. "
                "Between it and products-api lies what the outbox's guarantee costs (an event "
                "stored with the create, sent at least once even if the process dies) and "
                "products-api's validation, metrics and logs.",
            ]
            if emitting
            else []
        ),
        "",
        "On FerretDB (SQLite) every write by `_id` (update, delete, findAndModify) reads the "
        "whole collection, about 10 us of its CPU per stored product, while inserts and reads "
        "by `_id` do not; concurrent writes also fail with SQLITE_BUSY ('database is locked'). "
        "So products-api's creates never write to a stored product: each create stages its "
        "event in `products_outbox` (an insert) before inserting the product, and once the "
        "broker has the event it is deleted from that small collection together with the "
        "others sent meanwhile (fnkit.outbox); concurrent creates share each insert (group "
        "commit, fnkit.batch). Changes and deletes still carry their events inside the product "
        "and pop them once sent, a pass over the catalogue each on FerretDB; on MongoDB a "
        "write by `_id` uses the index. "
        f"{undrained} of {len(posts)} POST runs still had events pending 15 s after wrk "
        "stopped (the harness stops waiting then, so their sends are not in the figures).",
        "",
        "Targets:",
        "",
        *(f"- **{e['label']}**: {e['note']}" for e in targets_.values()),
        "",
        "Reproduce: `uv run python -m bench.rest` (`--rounds`, `--seconds`, `--connections`).",
    ]
    (RESULTS / "rest.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=Params.rounds)
    parser.add_argument("--seconds", type=int, default=Params.seconds)
    parser.add_argument("--warmup", type=int, default=Params.warmup)
    parser.add_argument("--connections", type=int, default=Params.connections)
    parser.add_argument("--products", type=int, default=Params.products)
    parser.add_argument("--report", action="store_true", help="only rewrite rest.md from rest.json")
    args = parser.parse_args(argv)
    if args.report:
        write_markdown(json.loads((RESULTS / "rest.json").read_text()))
        return
    params = Params(args.rounds, args.seconds, args.warmup, args.connections, args.products)
    run(params)
    print(f"wrote {RESULTS / 'rest.md'}")


if __name__ == "__main__":
    main()
