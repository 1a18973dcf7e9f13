"""A bulk-job record made a product: tidied, then validated by products-api's own model.

A record that is not a valid product is a result of its item (`item.failed` with the reason),
not an error of the function: the reason says which fields are wrong and why.
"""

from __future__ import annotations

from typing import Any

from products_api.models import ProductIn
from pydantic import ValidationError

_TEXT_FIELDS = ("sku", "name", "description", "currency", "price")
_JSON_TYPES = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
}


class InvalidRecord(Exception):
    def __init__(self, reason: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors


def normalise(record: dict[str, Any]) -> dict[str, Any]:
    """Surrounding whitespace trimmed, the currency upper-case, tags trimmed and lower-case."""
    tidy = dict(record)
    for name in _TEXT_FIELDS:
        if isinstance(tidy.get(name), str):
            tidy[name] = tidy[name].strip()
    if isinstance(tidy.get("currency"), str):
        tidy["currency"] = tidy["currency"].upper()
    if isinstance(tidy.get("tags"), list):
        tidy["tags"] = [t.strip().lower() if isinstance(t, str) else t for t in tidy["tags"]]
    return tidy


def to_product(record: Any) -> ProductIn:
    """The product the record describes; InvalidRecord with every problem if it is not one."""
    if not isinstance(record, dict):
        raise InvalidRecord(
            f"a record must be a JSON object, not {_JSON_TYPES.get(type(record), 'null')}",
            [{"loc": [], "msg": "not a JSON object", "type": "record_type"}],
        )
    try:
        return ProductIn.model_validate(normalise(record))
    except ValidationError as exc:
        errors = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        reason = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'record'}: {error['msg']}"
            for error in errors
        )
        raise InvalidRecord(reason, errors) from None
