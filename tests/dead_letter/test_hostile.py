"""Hostile and malformed input: a precise 4xx every time, never a 5xx, never an injection."""

from __future__ import annotations

import orjson
import pytest

from tests.dead_letter.helpers import Served, binary_dead_letter, structured_dead_letter

pytestmark = pytest.mark.integration

INJECTIONS = ['{"$ne": null}', '{"$gt": ""}', "$where", '{"$regex": ".*"}']


@pytest.fixture
async def two_letters(service: Served) -> Served:
    for _ in range(2):
        assert (await service.post(binary_dead_letter(b"{}"))).status_code == 204
    return service


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("name", ["type", "source", "destination"])
async def test_operator_injection_in_filters_matches_nothing(
    two_letters: Served, name: str, value: str
) -> None:
    response = await two_letters.client.get("/dead-letters", params={name: value})

    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_bracketed_operator_parameters_are_not_filters(two_letters: Served) -> None:
    listed = await two_letters.client.get("/dead-letters?type[$ne]=x&source[$gt]=")
    purge = await two_letters.client.delete("/dead-letters?type[$ne]=x")

    assert listed.status_code == 200 and len(listed.json()["items"]) == 2
    assert purge.status_code == 422  # no real filter: refusing beats deleting everything
    assert len((await two_letters.client.get("/dead-letters")).json()["items"]) == 2


@pytest.mark.parametrize("value", INJECTIONS)
async def test_operator_injection_in_purge_deletes_nothing(two_letters: Served, value: str) -> None:
    response = await two_letters.client.delete("/dead-letters", params={"type": value})

    assert response.status_code == 200 and response.json() == {"deleted": 0}
    assert len((await two_letters.client.get("/dead-letters")).json()["items"]) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "1000000000000000000000000000000"},
        {"limit": "501"},
        {"limit": "0"},
        {"limit": "-5"},
        {"limit": "ten"},
        {"limit": "1e3"},
        {"cursor": "not-a-cursor"},
        {"cursor": '{"$gt": ""}'},
        {"cursor": "f" * 500},
        {"since": "yesterday"},
        {"until": "2025-13-45T99:00:00Z"},
        {"type": "t" * 5000},
    ],
)
async def test_bad_list_parameters_are_422(service: Served, params: dict[str, str]) -> None:
    response = await service.client.get("/dead-letters", params=params)

    assert response.status_code == 422, response.text


async def test_largest_allowed_limit_works(two_letters: Served) -> None:
    response = await two_letters.client.get("/dead-letters", params={"limit": "500"})

    assert response.status_code == 200 and len(response.json()["items"]) == 2


@pytest.mark.parametrize(
    "letter_id", ['{"$ne": null}', "0" * 23, "z" * 24, "...", "a..b", "%00", "a" * 3000]
)
async def test_ids_that_cannot_exist_are_404_and_delete_is_still_204(
    two_letters: Served, letter_id: str
) -> None:
    shown = await two_letters.client.get(f"/dead-letters/{letter_id}")
    replayed = await two_letters.client.post(f"/dead-letters/{letter_id}/replay")
    deleted = await two_letters.client.delete(f"/dead-letters/{letter_id}")

    assert (shown.status_code, replayed.status_code) == (404, 404)
    assert deleted.status_code == 204
    assert len((await two_letters.client.get("/dead-letters")).json()["items"]) == 2


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": "application/json"}, b'{"id": "1"}', 415),
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", 415),
        ({"content-type": "application/cloudevents+json"}, b"{not json", 400),
        ({"content-type": "application/cloudevents+json"}, b'["a"]', 400),
        (
            {"content-type": "application/cloudevents+json"},
            orjson.dumps({"specversion": "1.0", "source": "/s", "type": "t"}),
            400,
        ),
        (
            {"content-type": "application/cloudevents+json"},
            orjson.dumps(
                {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data_base64": "***"}
            ),
            400,
        ),
        ({"ce-specversion": "1.0", "ce-source": "/s", "ce-type": "t"}, b"", 400),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "content-type": "application/json",
            },
            b"{broken",
            400,
        ),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "ce-bad-name": "x",
            },
            b"",
            400,
        ),
        (
            {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"},
            b"x" * (2 << 20),
            413,
        ),
    ],
)
async def test_requests_that_are_not_dead_letters_are_4xx(
    service: Served, headers: dict[str, str], body: bytes, status: int
) -> None:
    response = await service.client.post("/", headers=headers, content=body)

    assert response.status_code == status, response.text
    assert (await service.client.get("/dead-letters")).json()["items"] == []


async def test_odd_but_valid_dead_letters_are_stored_and_shown(service: Served) -> None:
    deep = b"[" * 500 + b"]" * 500  # valid JSON, too deep to render as a JSON value
    messages = [
        binary_dead_letter(deep),
        structured_dead_letter(ext={"$gt": 1, "a.b": [1]}, data={"$where": "1"}),
        binary_dead_letter(b"{}", error={"knativeerrorcode": "teapot", "knativeerrordata": "%%"}),
        binary_dead_letter(b"{}", type="io.x." + "t" * 3000),
    ]
    ids = [await service.stored(message) for message in messages]
    raw = await service.client.post(
        "/",
        content=b"{}",
        headers=[
            (b"ce-specversion", b"1.0"),
            (b"ce-id", b"raw-bytes"),
            (b"ce-source", b"/s"),
            (b"ce-type", b"t"),
            (b"ce-note", b"caf\xc3\xa9 \xff"),
            (b"content-type", b"application/json"),
        ],
    )

    letters = [(await service.client.get(f"/dead-letters/{i}")).json() for i in ids]
    note = (await service.client.get(f"/dead-letters/{await service.id_of('raw-bytes')}")).json()

    assert raw.status_code == 204
    assert letters[0]["event"]["data"] == deep.decode()
    assert letters[1]["event"]["attributes"]["ext"] == '{"$gt":1,"a.b":[1]}'
    assert letters[1]["event"]["data"] == {"$where": "1"}
    assert (letters[2]["code"], letters[2]["error"]["body"]) == (None, "%%")
    assert letters[3]["type"].endswith("t" * 3000)
    assert note["event"]["attributes"]["note"] == "café \ufffd"
    metrics = (await service.client.get("/metrics")).text
    assert 'dead_letter_stored_total{type="other"}' in metrics  # the over-long type


async def test_bad_replay_bodies_are_422(two_letters: Served) -> None:
    letter_id = (await two_letters.client.get("/dead-letters")).json()["items"][0]["id"]
    url = f"/dead-letters/{letter_id}/replay"

    not_json = await two_letters.client.post(
        url, content=b"target=broker", headers={"content-type": "text/plain"}
    )
    wrong_type = await two_letters.client.post(url, json={"target": {"$ne": None}})
    too_long = await two_letters.client.post(url, json={"target": "http://x/" + "a" * 5000})

    assert (not_json.status_code, wrong_type.status_code, too_long.status_code) == (422, 422, 422)
