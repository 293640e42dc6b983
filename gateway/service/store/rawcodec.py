"""The raw ChirpStack events, compressed: zlib against a preset dictionary the store keeps.

A raw event (the body exactly as received, JSON or protobuf) is most of what the store keeps per
uplink (~2.1 KB of JSON with ``object`` and three gateways' metadata, ~0.9 KB of protobuf), and
nearly all of it repeats from one event to the next: key names, tenant, application and profile ids,
gateway ids and locations, region metadata. Raw DEFLATE (zlib, no header) with a *preset dictionary*
of such events stores only what differs: ~0.14 KB per event.

Dictionaries live in the ``raw_dictionaries`` table (schema 5), each with its id, the encoding of
the events it compresses and where it came from:

* ``seed``: made from :data:`SEED_PATH`, realistic ChirpStack v4 ``up`` events shipped with the
  package (as JSON, compact and indented, or the same events as protobuf); written into the table
  the first time an event of that encoding is stored.
* ``store``: once :data:`TRAIN_AFTER` events of an encoding have been compressed with the seed, the
  store makes one dictionary of its own from the newest events it stored (its own tenant, gateways,
  devices), and compresses with that from then on.

A row's ``encoding`` column names both: ``json+z2`` is a JSON body compressed with dictionary 2;
a plain ``json`` or ``protobuf`` (rows written before schema 5, events stored without a dictionary)
holds the body as it is. A dictionary is never changed or deleted, so every row stays readable:
:func:`decompress` gives back the exact bytes received (``Store.raw_event``).
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import deque
from pathlib import Path
from typing import Any

from gateway.service.store.backend import Cursor
from gateway.service.store.dialect import Dialect
from gateway.service.store.values import StoreError, format_time, now

__all__ = ["SEED_PATH", "TRAIN_AFTER", "RawCodec", "decompress", "split_encoding"]

SEED_PATH = Path(__file__).with_name("raw_seed_v1.json")
TRAIN_AFTER = 256  # events compressed with the seed before the store makes its own dictionary
DICT_MAX = 32 * 1024  # DEFLATE's window: a dictionary longer than this is cut to its end
_LEVEL, _WBITS, _MEMLEVEL = 7, -15, 8  # raw DEFLATE; level 7: ~20 µs per event; 9 costs 3-4x for 10 % less
_MARK = "+z"


def split_encoding(column: str) -> tuple[str, int | None]:
    """``"json+z2"`` -> ``("json", 2)``; ``"json"`` -> ``("json", None)`` (stored as received)."""
    base, mark, ident = column.partition(_MARK)
    return (base, int(ident)) if mark else (base, None)


def decompress(data: bytes, dictionary: bytes) -> bytes:
    d = zlib.decompressobj(_WBITS, zdict=dictionary)
    out = d.decompress(data) + d.flush()
    if not d.eof:
        raise StoreError("a stored raw event is truncated")
    return out


def seed_dictionary(encoding: str) -> bytes:
    """The seed dictionary for ``encoding``: the shipped events, most typical last (DEFLATE finds
    the nearest match first). JSON: each event compact (as ChirpStack's marshaler writes it) and
    indented (as protobuf's ``MessageToJson`` writes it); protobuf: each event serialised."""
    events = json.loads(SEED_PATH.read_text(encoding="utf-8"))["events"]
    parts: list[bytes] = []
    if encoding == "json":
        for ev in events:
            parts.append(json.dumps(ev, separators=(",", ":")).encode())
            parts.append(json.dumps(ev, indent=2).encode())
    elif encoding == "protobuf":
        from chirpstack_api import integration
        from google.protobuf import json_format

        for ev in events:
            parts.append(json_format.ParseDict(ev, integration.UplinkEvent()).SerializeToString())
    else:
        return b""
    return b"".join(parts)[-DICT_MAX:]


class RawCodec:
    """Compresses raw events for one store (the dictionaries in use, per encoding); thread-safe.

    Used inside the store's write transactions: :meth:`encode` may write a dictionary row in the
    transaction it is given. Several processes writing one store each keep their own view; a
    dictionary one of them wrote is found by id when read, and none is ever written twice for an
    encoding (the table is looked at under the writers' lock first).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dicts: dict[int, bytes] = {}
        self._current: dict[str, tuple[int, str, Any]] = {}  # encoding -> (id, origin, primed compressor)
        self._seeded: dict[str, int] = {}  # events compressed with the seed, by encoding
        self._recent: dict[str, deque[bytes]] = {}

    def begin(self, cur: Cursor, d: Dialect) -> None:
        """At the start of each write: forget a dictionary that is not in the table (this process
        wrote it in a transaction that was rolled back, and the events compressed with it went too).
        One primary-key lookup per encoding in use."""
        with self._lock:
            for encoding, (ident, _origin, _base) in list(self._current.items()):
                if cur.execute(d.sql("SELECT 1 FROM raw_dictionaries WHERE id = ?"), (ident,)).fetchone() is None:
                    self._dicts.pop(ident, None)
                    del self._current[encoding]

    def encode(self, cur: Cursor, d: Dialect, raw: bytes | None, encoding: str) -> tuple[bytes | None, str]:
        """``(stored bytes, encoding column)`` of one raw event, in the write transaction ``cur``."""
        if raw is None or encoding not in ("json", "protobuf"):
            return raw, encoding
        with self._lock:
            current = self._current.get(encoding)
            if current is None or (current[1] == "seed" and self._seeded.get(encoding, 0) >= TRAIN_AFTER):
                current = self._choose(cur, d, encoding)
            ident, origin, base = current
            if origin == "seed":
                self._seeded[encoding] = self._seeded.get(encoding, 0) + 1
                self._recent.setdefault(encoding, deque(maxlen=64)).append(raw)
            c = base.copy()
        return c.compress(raw) + c.flush(), f"{encoding}{_MARK}{ident}"

    def _choose(self, cur: Cursor, d: Dialect, encoding: str) -> tuple[int, str, Any]:
        """The dictionary to compress ``encoding`` with, writing the seed's or the store's own row
        when its time has come."""
        rows = cur.execute(
            d.sql("SELECT id, origin FROM raw_dictionaries WHERE encoding = ? ORDER BY id DESC"), (encoding,)
        ).fetchall()
        origins = {str(r[1]): int(r[0]) for r in reversed(rows)}  # newest of each origin
        if "store" not in origins and len(self._recent.get(encoding, ())) and self._seeded.get(encoding, 0) >= TRAIN_AFTER:
            made = _train(list(self._recent[encoding]))
            origins["store"] = _insert(cur, d, encoding, "store", made)
        if "store" in origins:
            ident, origin = origins["store"], "store"
        else:
            if "seed" not in origins:
                origins["seed"] = _insert(cur, d, encoding, "seed", seed_dictionary(encoding))
            ident, origin = origins["seed"], "seed"
        dictionary = self._load(cur, d, ident)
        base = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEMLEVEL, zdict=dictionary)
        self._current[encoding] = (ident, origin, base)
        return self._current[encoding]

    def _load(self, cur: Any, d: Dialect, ident: int) -> bytes:
        dictionary = self._dicts.get(ident)
        if dictionary is None:
            row = cur.execute(d.sql("SELECT dictionary FROM raw_dictionaries WHERE id = ?"), (ident,)).fetchone()
            if row is None:
                raise StoreError(f"raw event dictionary {ident} is missing from the store")
            dictionary = self._dicts[ident] = bytes(row[0])
        return dictionary

    def decode(self, db: Any, raw: bytes | None, column: str) -> tuple[bytes | None, str]:
        """The event as received and its encoding (``json`` | ``protobuf`` | ...) from a stored row."""
        encoding, ident = split_encoding(column or "")
        if raw is None or ident is None:
            return raw, encoding
        with self._lock:
            dictionary = self._dicts.get(ident)
        if dictionary is None:
            rows = db.query(db.dialect.sql("SELECT dictionary FROM raw_dictionaries WHERE id = ?"), (ident,))
            if not rows:
                raise StoreError(f"raw event dictionary {ident} is missing from the store")
            dictionary = bytes(rows[0][0])
            with self._lock:
                self._dicts[ident] = dictionary
        return decompress(bytes(raw), dictionary), encoding


def _train(events: list[bytes]) -> bytes:
    """A dictionary from the store's own recent events: their concatenation, newest last, cut to
    the window. (Repeated material is what DEFLATE can refer back to; the newest events are what
    the next ones look like.)"""
    return b"".join(events)[-DICT_MAX:]


def _insert(cur: Cursor, d: Dialect, encoding: str, origin: str, dictionary: bytes) -> int:
    row = cur.execute(
        d.sql(
            "INSERT INTO raw_dictionaries (encoding, origin, created_at, dictionary) VALUES (?, ?, ?, ?) RETURNING id"
        ),
        (encoding, origin, format_time(now()), dictionary),
    ).fetchone()
    return int(row[0])
