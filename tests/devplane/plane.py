"""Helpers for devplane's end-to-end tests: the routing they run, and a client for devplane.

Subscribers are `tests/devplane/subscriber.py` run as real function processes (they record
every attempt in the real MongoDB-protocol server); `dls` is the recording stand-in for the
dead-letter service. The routing is the chart's values plus an extra values file, exactly as
a user adds Triggers without editing the chart.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from devplane.servers import FunctionProcess

from tests.support.waiting import wait_for

PING = "io.knative-playbook.test.ping.v1"
OBJECT = "io.knative-playbook.test.object.v1"
FLAKY = "io.knative-playbook.test.flaky.v1"
DOOMED = "io.knative-playbook.test.doomed.v1"
REPLIED = "io.knative-playbook.test.replied.v1"
PATIENT = "io.knative-playbook.test.patient.v1"
NOBODY = "io.knative-playbook.test.nobody.v1"
SLOW = "io.knative-playbook.test.slow.v1"

# The cron job proves it ran with the environment a cluster would give it.
TICK_JOB = textwrap.dedent("""
    import os, pymongo
    client = pymongo.MongoClient(os.environ["MONGO_URL"])
    client[os.environ["MONGO_DB"]]["cron_runs"].insert_one({
        "run": os.environ["DEVPLANE_CRON_RUN"], "k_sink": os.environ["K_SINK"],
        "environment": os.environ["ENVIRONMENT"]})
    print("tick done")
""")

SUBSCRIBERS = ("alpha", "beta", "gamma", "dls")


def routing_values(urls: dict[str, str]) -> str:
    return json.dumps(
        {
            "eventing": {
                "delivery": {
                    "retry": 2,
                    "backoffPolicy": "linear",
                    "backoffDelay": "PT0.1S",
                    "timeout": "PT5S",
                    "deadLetterSink": "dls",
                }
            },
            "cronJobs": {
                "cleanup": {"enabled": False},
                "tick": {
                    "enabled": True,
                    "schedule": "* * * * *",
                    "timeZone": "Asia/Kolkata",
                    "command": ["python", "-c", TICK_JOB],
                },
            },
            "functions": {
                "alpha": {
                    "url": urls["alpha"],
                    "triggers": [
                        {"name": "pings", "filter": {"attributes": {"type": PING}}},
                        {
                            "name": "uploads",
                            "filter": {"attributes": {"type": OBJECT, "bucket": "uploads"}},
                        },
                        {
                            "name": "flaky",
                            "filter": {"attributes": {"type": FLAKY}},
                            "delivery": {
                                "retry": 3,
                                "backoffPolicy": "exponential",
                                "backoffDelay": "PT0.3S",
                            },
                        },
                        {"name": "doomed", "filter": {"attributes": {"type": DOOMED}}},
                        {
                            "name": "slow",
                            "filter": {"attributes": {"type": SLOW}},
                            "delivery": {"timeout": "PT0.5S"},
                        },
                    ],
                },
                "beta": {
                    "url": urls["beta"],
                    "triggers": [
                        {"name": "pings", "filter": {"attributes": {"type": PING}}},
                        {"name": "replies", "filter": {"attributes": {"type": REPLIED}}},
                    ],
                },
                "gamma": {
                    "url": urls["gamma"],
                    "triggers": [
                        {
                            "name": "patient",
                            "filter": {"attributes": {"type": PATIENT}},
                            "delivery": {
                                "retry": 20,
                                "backoffPolicy": "linear",
                                "backoffDelay": "PT0.25S",
                            },
                        },
                    ],
                },
                "dls": {"url": urls["dls"], "triggers": []},
            },
        }
    )


@dataclass
class Plane:
    url: str
    process: FunctionProcess
    subscribers: dict[str, FunctionProcess]
    db: Any
    client: httpx.AsyncClient
    capacity: int

    async def post(self, event_type: str, data: Any = None, **extensions: str) -> httpx.Response:
        """Post a binary-mode event; its id is in the response and in `ce-id`."""
        headers = {
            "ce-specversion": "1.0",
            "ce-id": uuid.uuid4().hex,
            "ce-type": event_type,
            "ce-source": "/tests/devplane",
            "content-type": "application/json",
            **{f"ce-{name}": value for name, value in extensions.items()},
        }
        return await self.client.post(
            self.url + "/", headers=headers, content=json.dumps(data if data is not None else {})
        )

    async def event(self, event_id: str) -> dict[str, Any]:
        response = await self.client.get(self.url + "/events", params={"id": event_id})
        response.raise_for_status()
        events = response.json()["events"]
        assert events, f"event {event_id} is not in devplane's event log"
        return dict(events[0])

    async def settled(self, event_id: str) -> dict[str, Any]:
        """The event once every delivery of it is finished."""

        async def finished() -> dict[str, Any] | None:
            record = await self.event(event_id)
            done = all(d["outcome"] not in ("pending", "retrying") for d in record["deliveries"])
            return record if done else None

        return await wait_for(finished, f"every delivery of {event_id} to finish")

    async def attempts(self, subscriber: str, event_id: str) -> list[dict[str, Any]]:
        cursor = self.db["attempts"].find({"subscriber": subscriber, "event_id": event_id})
        return sorted(await cursor.to_list(None), key=lambda doc: doc["attempt"])

    async def idle(self) -> None:
        async def empty() -> bool:
            response = await self.client.get(self.url + "/triggers")
            return not any(response.json()["queues"].values())

        await wait_for(empty, "devplane's queues to empty")
