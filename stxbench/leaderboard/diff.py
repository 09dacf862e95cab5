"""Records as flat ``dotted.field -> value`` maps, for side-by-side comparison."""

from __future__ import annotations

from typing import Any

from stxbench.record.schema import Record


#: the fields that name a list item, in the order they are joined: a matrix by its name; a
#: counted layer by module, op and kind(s); an energy estimate by convention, cost model, pricing
_NAMING_FIELDS = (("name",), ("module", "op", "kind", "a_kind", "b_kind"),
                  ("convention", "cost_model", "pricing"))


def _item_key(item: dict[str, Any], index: int) -> str:
    """List items keyed by what names them, else by position."""
    for fields in _NAMING_FIELDS:
        if fields[0] in item:
            return ":".join(str(item[k]) for k in fields if k in item)
    return str(index)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        seen: set[str] = set()
        for index, item in enumerate(value):
            key = _item_key(item, index)
            if key in seen:  # two items named alike: the position tells them apart
                key = f"{key}#{index}"
            seen.add(key)
            out.update(flatten(item, f"{prefix}[{key}]"))
        return out
    if isinstance(value, list):
        return {prefix: tuple(value)}
    return {prefix: value}


def flat_record(record: Record) -> dict[str, Any]:
    return flatten(record.model_dump(mode="json"))


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys whose values differ, or that only one side has, in A's order then B's."""
    keys = list(a) + [k for k in b if k not in a]
    return [k for k in keys if k not in a or k not in b or a[k] != b[k]]
