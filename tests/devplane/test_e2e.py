"""devplane end to end: real processes, real MongoDB, Knative's delivery semantics."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.devplane.plane import (
    DOOMED,
    FLAKY,
    NOBODY,
    OBJECT,
    PATIENT,
    PING,
    REPLIED,
    SLOW,
    Plane,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def outcomes(record: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {d["subscriber"]: (d["outcome"], d["attempts"]) for d in record["deliveries"]}


async def test_binary_and_structured_events_are_accepted_with_202(plane: Plane) -> None:
    binary = await plane.post(PING, {"n": 1})
    event_id = uuid.uuid4().hex
    structured = await plane.client.post(
        plane.url + "/",
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(
            {
                "specversion": "1.0",
                "id": event_id,
                "type": PING,
                "source": "/tests/devplane",
                "data": {"n": 2},
            }
        ),
    )

    assert binary.status_code == 202
    assert structured.status_code == 202
    assert structured.json() == {"id": event_id, "deliveries": 2}
    record = await plane.settled(event_id)
    assert outcomes(record) == {"alpha": ("delivered", 1), "beta": ("delivered", 1)}


async def test_not_a_cloudevent_gets_a_clear_4xx(plane: Plane) -> None:
    missing_type = await plane.client.post(
        plane.url + "/",
        headers={"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/t"},
        content=b"{}",
    )
    plain_json = await plane.client.post(plane.url + "/", json={"hello": "world"})

    assert missing_type.status_code == 400
    assert "ce-type" in missing_type.json()["error"]["message"]
    assert plain_json.status_code == 415


async def test_each_matching_trigger_gets_its_own_copy(plane: Plane) -> None:
    event_id = (await plane.post(PING, {"hello": "both"})).json()["id"]

    await plane.settled(event_id)
    alpha, beta = await plane.attempts("alpha", event_id), await plane.attempts("beta", event_id)
    assert [a["type"] for a in alpha] == [PING]
    assert [b["type"] for b in beta] == [PING]
    assert alpha[0]["attributes"]["source"] == "/tests/devplane"


async def test_filter_on_an_extension_attribute(plane: Plane) -> None:
    uploads = (await plane.post(OBJECT, {}, bucket="uploads")).json()
    elsewhere = (await plane.post(OBJECT, {}, bucket="processed")).json()

    assert uploads["deliveries"] == 1
    assert elsewhere["deliveries"] == 0
    await plane.settled(uploads["id"])
    attempts = await plane.attempts("alpha", uploads["id"])
    assert attempts[0]["attributes"]["bucket"] == "uploads"
    assert await plane.attempts("alpha", elsewhere["id"]) == []


async def test_an_event_no_trigger_matches_reaches_nobody(plane: Plane) -> None:
    lonely = (await plane.post(NOBODY, {})).json()
    # An event posted after it, delivered, shows the broker has moved past the first one.
    marker = (await plane.post(PING, {})).json()
    await plane.settled(marker["id"])

    record = await plane.event(lonely["id"])
    assert record["deliveries"] == []
    assert await plane.db["attempts"].count_documents({"event_id": lonely["id"]}) == 0


async def test_failing_twice_with_503_then_succeeding_is_delivered_on_the_third_attempt(
    plane: Plane,
) -> None:
    event_id = (await plane.post(FLAKY, {"script": [503, 503]})).json()["id"]

    record = await plane.settled(event_id)
    assert outcomes(record) == {"alpha": ("delivered", 3)}
    attempts = await plane.attempts("alpha", event_id)
    assert [a["status"] for a in attempts] == [503, 503, 200]
    # Exponential from PT0.3S: the first retry waits 0.3 s, the second 0.6 s (loosely).
    gaps = [
        (later["at"] - earlier["at"]).total_seconds()
        for earlier, later in itertools.pairwise(attempts)
    ]
    assert gaps[0] >= 0.25
    assert gaps[1] >= 0.5
    assert (
        await plane.db["attempts"].count_documents({"subscriber": "dls", "event_id": event_id}) == 0
    )


async def test_always_failing_goes_to_the_dead_letter_sink_with_knative_error_attributes(
    plane: Plane,
) -> None:
    event_id = (await plane.post(DOOMED, {"always": 500})).json()["id"]

    record = await plane.settled(event_id)
    assert outcomes(record) == {"alpha": ("dead-lettered", 3)}  # retry: 2 -> 3 attempts
    assert len(await plane.attempts("alpha", event_id)) == 3
    [dead] = await wait_for(lambda: plane.attempts("dls", event_id), "the dead letter at dls")
    attributes = dead["attributes"]
    assert attributes["type"] == DOOMED
    assert attributes["knativeerrordest"] == plane.subscribers["alpha"].url
    assert attributes["knativeerrorcode"] == "500"
    body = json.loads(base64.b64decode(attributes["knativeerrordata"]))
    assert body["error"]["message"] == "scripted failure 500 on attempt 3"


async def test_an_attempt_longer_than_the_trigger_timeout_is_retried(plane: Plane) -> None:
    event_id = (await plane.post(SLOW, {"sleep": [3]})).json()["id"]

    record = await plane.settled(event_id)
    assert outcomes(record) == {"alpha": ("delivered", 2)}
    assert len(await plane.attempts("alpha", event_id)) == 2


async def test_a_non_retryable_4xx_is_dead_lettered_at_once(plane: Plane) -> None:
    event_id = (await plane.post(DOOMED, {"always": 422})).json()["id"]

    record = await plane.settled(event_id)
    assert outcomes(record) == {"alpha": ("dead-lettered", 1)}
    [dead] = await wait_for(lambda: plane.attempts("dls", event_id), "the dead letter at dls")
    assert dead["attributes"]["knativeerrorcode"] == "422"


async def test_reply_events_are_routed_to_their_own_subscribers(plane: Plane) -> None:
    reply = {"type": REPLIED, "data": {"answer": 42}, "extensions": {"job": "j-7"}}
    event_id = (await plane.post(PING, {"reply": reply})).json()["id"]

    record = await plane.settled(event_id)
    replies = {d["subscriber"]: d.get("reply_id") for d in record["deliveries"]}
    # alpha and beta both answered the ping; each answer is an event of its own.
    assert replies["alpha"] and replies["beta"] and replies["alpha"] != replies["beta"]
    for subscriber in ("alpha", "beta"):
        routed = await plane.settled(replies[subscriber])
        assert routed["type"] == REPLIED
        assert routed["origin"] == f"reply from {subscriber}"
        assert outcomes(routed) == {"beta": ("delivered", 1)}
        [seen] = await plane.attempts("beta", replies[subscriber])
        assert seen["attributes"]["job"] == "j-7"


async def test_a_subscriber_down_for_less_than_the_retry_window_loses_nothing(
    plane: Plane,
) -> None:
    gamma = plane.subscribers["gamma"]
    gamma.stop()
    try:
        ids = [(await plane.post(PATIENT, {"n": n})).json()["id"] for n in range(5)]
        await asyncio.sleep(1.5)  # a few refused attempts while it is down
        failing = [await plane.event(i) for i in ids]
        assert all(d["outcome"] == "retrying" for r in failing for d in r["deliveries"])
    finally:
        gamma.start()
    gamma.wait_ready(timeout=60)

    for event_id in ids:
        record = await plane.settled(event_id)
        [(outcome, attempts)] = outcomes(record).values()
        assert outcome == "delivered"
        assert attempts > 1
        assert len(await plane.attempts("gamma", event_id)) == 1
    assert (
        await plane.db["attempts"].count_documents({"subscriber": "dls", "event_id": {"$in": ids}})
        == 0
    )


async def test_a_full_queue_pushes_back_with_503_and_loses_nothing(plane: Plane) -> None:
    await plane.idle()
    await plane.client.post(plane.url + "/knobs", json={"paused": True})
    try:
        accepted = [(await plane.post(PING, {"n": n})) for n in range(plane.capacity)]
        refused = await plane.post(PING, {"n": "one too many"})
    finally:
        await plane.client.post(plane.url + "/knobs", json={"paused": False})

    assert {r.status_code for r in accepted} == {202}
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "queue_full"
    for response in accepted:
        record = await plane.settled(response.json()["id"])
        assert outcomes(record) == {"alpha": ("delivered", 1), "beta": ("delivered", 1)}


async def test_duplicate_knob_delivers_an_event_twice(plane: Plane) -> None:
    await plane.client.post(plane.url + "/knobs", json={"duplicate_ratio": 1.0})
    try:
        event_id = (await plane.post(OBJECT, {}, bucket="uploads")).json()["id"]
        record = await wait_for(lambda: _with_duplicate(plane, event_id), "the duplicate delivery")
    finally:
        await plane.client.post(plane.url + "/knobs", json={"duplicate_ratio": 0.0})

    assert [d.get("duplicate", False) for d in record["deliveries"]] == [False, True]
    await plane.settled(event_id)
    assert len(await plane.attempts("alpha", event_id)) == 2


async def _with_duplicate(plane: Plane, event_id: str) -> dict[str, Any] | None:
    record = await plane.event(event_id)
    return record if len(record["deliveries"]) == 2 else None


async def test_the_event_log_filters_by_type_and_limits(plane: Plane) -> None:
    for _ in range(3):
        await plane.post(NOBODY, {})

    response = await plane.client.get(plane.url + "/events", params={"type": NOBODY, "limit": 2})

    events = response.json()["events"]
    assert len(events) == 2
    assert {e["type"] for e in events} == {NOBODY}
    assert events[0]["received_at"] >= events[1]["received_at"]


async def test_metrics_show_queue_depth_and_deliveries_by_outcome(plane: Plane) -> None:
    text = (await plane.client.get(plane.url + "/metrics")).text

    assert 'devplane_queue_depth{subscriber="alpha"}' in text
    assert 'devplane_deliveries_total{outcome="dead-lettered",subscriber="alpha"}' in text


async def test_a_cron_job_runs_by_hand_with_the_cluster_environment(plane: Plane) -> None:
    run = (await plane.client.post(plane.url + "/cron/tick/run")).json()

    async def finished() -> dict[str, Any] | None:
        job = (await plane.client.get(plane.url + "/cron/tick")).json()
        done = [r for r in job["runs"] if r["id"] == run["id"] and r["state"] != "running"]
        return done[0] if done else None

    result = await wait_for(finished, "the cron job to finish")
    assert result["state"] == "succeeded", result
    assert result["output"] == ["tick done"]
    [doc] = await plane.db["cron_runs"].find({"run": run["id"]}).to_list(None)
    assert doc["k_sink"] == plane.url
    assert doc["environment"] == "dev"
    unknown = await plane.client.post(plane.url + "/cron/nope/run")
    assert unknown.status_code == 404


async def test_a_cron_schedule_fires_the_job_on_time(plane: Plane) -> None:
    # `* * * * *` fires at the next minute boundary (at most a minute away).
    job = (await plane.client.get(plane.url + "/cron/tick")).json()
    slot = datetime.fromisoformat(job["next_run"])
    assert slot.second == 0
    assert str(slot.utcoffset()) == "5:30:00"  # Asia/Kolkata, as configured

    async def fired() -> dict[str, Any] | None:
        job = (await plane.client.get(plane.url + "/cron/tick")).json()
        runs = [
            r
            for r in job["runs"]
            if r["trigger"] == "schedule"
            and r["state"] != "running"
            and datetime.fromisoformat(r["started_at"]) >= slot
        ]
        return runs[-1] if runs else None

    run = await wait_for(fired, "the cron schedule to fire", within=90)
    assert run["state"] == "succeeded"
    # In its own slot: not early, and before the next one.
    assert datetime.fromisoformat(run["started_at"]) < slot + timedelta(minutes=1)
    assert await plane.db["cron_runs"].count_documents({"run": run["id"]}) == 1
