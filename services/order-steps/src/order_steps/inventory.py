"""Inventory: stock reservations on products-api's products that never oversell.

Stock is the `stock` of the product document products-api keeps (`products`, one per sku).
A reservation takes the units off `stock` at once, so that every reader sees what is left; it
is later committed (the sale stands, stock stays down) or released (the units go back). Each
change of stock is a *move* with an id derived from what it does, `<order>/<sku>/reserve` or
`<order>/<sku>/release`, so a move happens at most once however often a step runs.

Concurrency. A move runs under its product's lock (fnkit.locks.LeaseLock: a unique insert, so
it holds across replicas and on FerretDB, whose updates are not atomic). Under it the stock is
read, the move refused if it would take stock below zero, and the product written. Every
stock move of order-steps holds that lock, so no two reservations can both take the last units,
whatever the concurrency. The write also bumps the product's `version` and `updated_at`, as
products-api's own writes do, so its ETags stay honest, and is conditional on the version just
read: on MongoDB a concurrent change by products-api makes it miss, and the move reads again.
(products-api does not take this lock: on FerretDB a products-api write racing a move can
still be lost; see the README.)

Crash safety without transactions. A move is first written to `inventory_moves` as `pending`,
then the product is written with `inventory_move: <move id>` in the same document write as the
new stock, then the move is marked `applied`. A holder that dies in between leaves a pending
move; the next holder of the product's lock settles it first: if the product names it as its
last move, it was applied, otherwise it never was (`void`, and running its step again applies
it). No other move can have come in between: they all hold the lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from bson import ObjectId
from fnkit import Rejected
from fnkit.locks import LeaseLock
from fnkit.mongo import now as _now
from pymongo.asynchronous.database import AsyncDatabase

from order_steps.models import PricedLine, ValidatedOrder

PRODUCTS: Final = "products"
MOVES: Final = "inventory_moves"
PENDING: Final = "pending"
APPLIED: Final = "applied"
VOID: Final = "void"

Kind = Literal["reserve", "release"]


class OutOfStock(Rejected):
    code = "out_of_stock"


class NotReserved(Rejected):
    code = "not_reserved"


@dataclass(frozen=True, slots=True)
class Moved:
    """What a move did: `applied` now, `already` (by an earlier run), or `refused` (the stock
    would have gone below zero, or the product is gone)."""

    what: Literal["applied", "already", "refused"]
    stock: int | None = None


class Inventory:
    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], locks: LeaseLock, *, margin_seconds: float
    ) -> None:
        self.products = db[PRODUCTS]
        self.moves = db[MOVES]
        self.locks = locks
        self.margin = margin_seconds

    async def create_indexes(self) -> None:
        await self.moves.create_index([("product_id", 1), ("state", 1)], name="product_state")

    async def reserve(self, order: ValidatedOrder) -> dict[str, Any]:
        """Take every line's units, or none: a line that cannot be had gives back the others."""
        taken: list[PricedLine] = []
        for line in order.lines:
            moved = await self._move(order.order_id, line, "reserve", "reserve-inventory")
            if moved.what == "refused":
                for done in reversed(taken):
                    await self._move(order.order_id, done, "release", "reserve-inventory")
                raise OutOfStock(
                    f"not enough {line.sku} in stock: {line.quantity} wanted, "
                    f"{moved.stock or 0} left",
                    details={"sku": line.sku, "wanted": line.quantity, "left": moved.stock or 0},
                )
            taken.append(line)
        return {"reserved": [_line(line) for line in taken]}

    async def commit(self, order: ValidatedOrder) -> dict[str, Any]:
        """The sale stands: each reservation is marked committed (stock is already down)."""
        for line in order.lines:
            reserve = await self.moves.find_one({"_id": _move_id(order.order_id, line, "reserve")})
            released = await self.moves.find_one(
                {"_id": _move_id(order.order_id, line, "release"), "state": APPLIED}
            )
            if reserve is None or reserve["state"] != APPLIED or released is not None:
                raise NotReserved(f"{line.sku} is not reserved for this order")
        now = _now()
        for line in order.lines:
            await self.moves.update_one(
                {"_id": _move_id(order.order_id, line, "reserve"), "committed_at": None},
                {"$set": {"committed_at": now}},
            )
        return {"committed": [_line(line) for line in order.lines]}

    async def release(self, order: ValidatedOrder) -> dict[str, Any]:
        """Give back every reserved, uncommitted line; lines never reserved need nothing."""
        released, kept = [], []
        for line in order.lines:
            reserve = await self.moves.find_one({"_id": _move_id(order.order_id, line, "reserve")})
            if reserve is None or reserve["state"] != APPLIED:
                continue
            if reserve.get("committed_at") is not None:
                kept.append(_line(line))
                continue
            await self._move(order.order_id, line, "release", "release-inventory")
            release = await self.moves.find_one({"_id": _move_id(order.order_id, line, "release")})
            # Lines reserve-inventory gave back itself (a rejected reservation) are not ours.
            if release is not None and release.get("by") == "release-inventory":
                released.append(_line(line))
        return {"released": released, "kept_committed": kept}

    async def _move(self, order_id: str, line: PricedLine, kind: Kind, by: str) -> Moved:
        move_id = _move_id(order_id, line, kind)
        product_id = ObjectId(line.product_id)
        delta = -line.quantity if kind == "reserve" else line.quantity
        async with self.locks.hold(f"products/{product_id}") as lease:
            await self._settle(product_id)
            move = await self.moves.find_one({"_id": move_id})
            if move is not None and move["state"] == APPLIED:
                return Moved("already")
            while True:
                product = await self.products.find_one(
                    {"_id": product_id, "deleted_at": {"$exists": False}},
                    {"stock": 1, "version": 1},
                )
                if product is None:
                    return Moved("refused")
                stock = int(product["stock"]) + delta
                if stock < 0:
                    return Moved("refused", int(product["stock"]))
                await self.moves.update_one(
                    {"_id": move_id},
                    {
                        "$set": {
                            "state": PENDING,
                            "order_id": order_id,
                            "sku": line.sku,
                            "product_id": product_id,
                            "kind": kind,
                            "delta": delta,
                            "by": by,
                            "at": _now(),
                        },
                        "$setOnInsert": {"committed_at": None},
                    },
                    upsert=True,
                )
                lease.ensure(self.margin)
                written = await self.products.update_one(
                    {"_id": product_id, "version": product["version"]},
                    {
                        "$set": {
                            "stock": stock,
                            "version": product["version"] + 1,
                            "updated_at": _now(),
                            "inventory_move": move_id,
                        }
                    },
                )
                if written.matched_count == 1:
                    break
                # products-api changed the product since it was read: read it again.
            await self.moves.update_one({"_id": move_id}, {"$set": {"state": APPLIED}})
            return Moved("applied", stock)

    async def _settle(self, product_id: ObjectId) -> None:
        """Decide the pending moves a holder that died left behind (see the module docstring)."""
        pending = await self.moves.find({"product_id": product_id, "state": PENDING}).to_list()
        if not pending:
            return
        product = await self.products.find_one({"_id": product_id}, {"inventory_move": 1})
        last = product.get("inventory_move") if product else None
        for move in pending:
            state = APPLIED if move["_id"] == last else VOID
            await self.moves.update_one({"_id": move["_id"]}, {"$set": {"state": state}})


def _move_id(order_id: str, line: PricedLine, kind: Kind) -> str:
    return f"{order_id}/{line.sku}/{kind}"


def _line(line: PricedLine) -> dict[str, Any]:
    return {"sku": line.sku, "quantity": line.quantity}
