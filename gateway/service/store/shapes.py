"""Message shapes: an uplink's message type with the set of field names its readings carry.

A store holds a handful of shapes per role (``air_quality`` with and without ``battery``,
``device_status``, ...), numbered in the ``shapes`` table (schema 6); ``shape_fields`` lists the
shapes that carry each field, and every uplink's event row names its shape. The events index
``(dev_eui, shape, id)`` then gives, for one device, the uplinks of one shape in the order they were
stored: the read API's ``field=`` pages walk only the uplinks whose shape carries the field, and the
live view a message type's newest uplinks, however long the device has been reporting.

Shapes are found or added inside the write transaction that stores the uplinks (:class:`ShapeIds`,
one per write), never cached across transactions: a shape added in a transaction that is rolled
back goes with it, and no event can name a shape that is not in the table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache

from gateway.contract.records import Reading
from gateway.service.store.backend import Backend, Cursor
from gateway.service.store.dialect import Dialect

__all__ = ["MOST_PER_DEVICE", "ShapeIds", "device_shapes", "fields_key", "shapes_with_field", "shape_types"]

# A device with more shapes than this (a codec whose object keys change from uplink to uplink) is
# read by walking its uplinks instead (queries.readings, api.history): still correct, not faster.
MOST_PER_DEVICE = 64


@lru_cache(maxsize=4096)
def _key_of(names: tuple[str, ...]) -> str:
    return json.dumps(sorted(set(names)), ensure_ascii=False, separators=(",", ":"))


def fields_key(readings: Sequence[Reading]) -> str:
    """The ``shapes.fields`` text of an uplink's readings: their distinct field names, sorted by code
    point, as a compact JSON array (``'["battery","pm10"]'``; ``'[]'`` for none)."""
    return _key_of(tuple(r.field for r in readings))


class ShapeIds:
    """The shape ids of one write transaction: found in ``shapes``, or added with their fields."""

    def __init__(self, cur: Cursor, d: Dialect) -> None:
        self._cur = cur
        self._d = d
        self._ids: dict[tuple[str, str], int] = {}

    def of(self, message_type: str | None, readings: Sequence[Reading]) -> int | None:
        """The id of the shape of an uplink of ``message_type`` with ``readings`` (None: no message type)."""
        if message_type is None:
            return None
        key = (message_type, fields_key(readings))
        ident = self._ids.get(key)
        if ident is None:
            ident = self._ids[key] = self._find_or_add(*key)
        return ident

    def _find_or_add(self, message_type: str, fields: str) -> int:
        cur, sql = self._cur, self._d.sql
        row = cur.execute(sql("SELECT id FROM shapes WHERE message_type = ? AND fields = ?"), (message_type, fields)).fetchone()
        if row is not None:
            return int(row[0])
        row = cur.execute(
            sql("INSERT INTO shapes (message_type, fields) VALUES (?, ?) RETURNING id"), (message_type, fields)
        ).fetchone()
        ident = int(row[0])
        for name in json.loads(fields):
            cur.execute(sql("INSERT INTO shape_fields (field, shape) VALUES (?, ?)"), (name, ident))
        return ident


def device_shapes(db: Backend, dev_eui: str, most: int = MOST_PER_DEVICE) -> list[int] | None:
    """The shapes of ``dev_eui``'s stored uplinks, one index seek each (a loose scan of
    ``events_device_shape``), in id order; None when it has more than ``most``."""
    sql = db.dialect.sql("SELECT MIN(shape) FROM events WHERE dev_eui = ? AND shape > ?")
    found: list[int] = []
    last = 0
    while True:
        row = db.query(sql, (dev_eui, last))
        if not row or row[0][0] is None:
            return found
        if len(found) == most:
            return None
        last = int(row[0][0])
        found.append(last)


def shapes_with_field(db: Backend, field: str, among: Sequence[int]) -> list[int]:
    """Which of the shapes ``among`` carry ``field``."""
    if not among:
        return []
    marks = ", ".join("?" * len(among))
    rows = db.query(db.dialect.sql(f"SELECT shape FROM shape_fields WHERE field = ? AND shape IN ({marks})"), (field, *among))
    return sorted(int(r[0]) for r in rows)


def shape_types(db: Backend, shapes: Sequence[int]) -> dict[int, str]:
    """Shape id -> its message type, for ``shapes``."""
    if not shapes:
        return {}
    marks = ", ".join("?" * len(shapes))
    rows = db.query(db.dialect.sql(f"SELECT id, message_type FROM shapes WHERE id IN ({marks})"), list(shapes))
    return {int(r[0]): str(r[1]) for r in rows}
