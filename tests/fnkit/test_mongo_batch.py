"""insert_many_once on the real MongoDB-protocol server: which documents a call inserted."""

from __future__ import annotations

from typing import Any

import pytest
from fnkit.mongo import insert_many_once

pytestmark = pytest.mark.integration


async def test_new_documents_are_inserted_and_taken_ids_are_reported(mongo_db: Any) -> None:
    await mongo_db["facts"].insert_one({"_id": "b", "v": "first"})

    outcomes = await insert_many_once(
        mongo_db["facts"],
        [{"_id": "a", "v": 1}, {"_id": "b", "v": "second"}, {"_id": "c", "v": 3}],
    )

    assert outcomes == [True, False, True]
    assert await mongo_db["facts"].find_one({"_id": "b"}) == {"_id": "b", "v": "first"}
    assert await mongo_db["facts"].count_documents({}) == 3


async def test_the_same_id_twice_in_one_call_is_inserted_once(mongo_db: Any) -> None:
    outcomes = await insert_many_once(mongo_db["facts"], [{"_id": "x"}, {"_id": "x"}])

    assert outcomes == [True, False]


async def test_a_taken_unique_key_other_than_the_id_counts_as_existing(mongo_db: Any) -> None:
    await mongo_db["facts"].create_index("sku", unique=True)
    await mongo_db["facts"].insert_one({"_id": 1, "sku": "A"})

    outcomes = await insert_many_once(
        mongo_db["facts"], [{"_id": 2, "sku": "A"}, {"_id": 3, "sku": "B"}]
    )

    assert outcomes == [False, True]


async def test_nothing_to_insert_is_no_call(mongo_db: Any) -> None:
    assert await insert_many_once(mongo_db["facts"], []) == []
