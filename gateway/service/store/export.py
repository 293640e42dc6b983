"""Exports of the reading log as CSV or JSON lines, streamed: memory stays flat at any size.

The rows are formatted by the database, not by Python objects per reading: SQLite builds each
JSON line with ``json_object`` and hands CSV rows as plain tuples to :mod:`csv`; PostgreSQL streams
``COPY ... TO STDOUT`` straight to the output. The stored ``value`` and ``tags`` are JSON text
already and go out as they are (a string value unquoted in CSV).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from gateway.service.store.values import format_time

__all__ = ["CSV_COLUMNS", "ExportFilter", "export"]

# The CSV columns, in order (frequency and gateway_count as in JSON lines).
CSV_COLUMNS = (
    "id", "time", "dev_eui", "device_name", "message_type", "field", "value", "unit", "unit_code", "f_cnt",
    "deduplication_id", "rssi", "snr", "gateway_id", "spreading_factor", "tags", "frequency", "gateway_count",
)  # fmt: skip

# Column expressions over reading_log AS v JOIN events AS e (the readings view, spelled out).
_SOURCE = {
    "id": "v.id", "time": "COALESCE(v.time, e.received_at)", "dev_eui": "e.dev_eui", "device_name": "e.device_name",
    "message_type": "e.message_type", "field": "v.field", "value": "v.value", "unit": "v.unit",
    "unit_code": "v.unit_code", "f_cnt": "e.f_cnt", "deduplication_id": "e.dedup_id", "rssi": "e.rssi",
    "snr": "e.snr", "gateway_id": "e.gateway_id", "spreading_factor": "e.spreading_factor", "tags": "e.tags",
    "frequency": "e.frequency", "gateway_count": "e.gateway_count",
}  # fmt: skip
# The JSON lines' keys, in the order of StoredReading.to_json.
_JSON_KEYS = (
    "id", "dev_eui", "device_name", "message_type", "time", "field", "value", "unit", "unit_code",
    "deduplication_id", "f_cnt", "tags", "rssi", "snr", "gateway_id", "spreading_factor", "frequency",
    "gateway_count",
)  # fmt: skip
_BATCH = 5000


@dataclass(frozen=True)
class ExportFilter:
    device: str | None = None
    field: str | None = None
    since: datetime | None = None


def _where(f: ExportFilter, mark: str) -> tuple[str, str, list[Any]]:
    """WHERE and ORDER BY over ``v`` and ``e`` (a device's readings walked as the read API does)."""
    where, params = ["1 = 1"], []
    if f.device:
        where.append(f"e.dev_eui = {mark}")
        params.append(f.device.lower())
    if f.field:
        where.append(f"v.field = {mark}")
        params.append(f.field)
    if f.since is not None:
        where.append(f"COALESCE(v.time, e.received_at) >= {mark} AND e.received_at >= {mark}")
        params += [format_time(f.since)] * 2
    return " AND ".join(where), "e.id, v.id" if f.device else "v.id", params


# Columns whose text may hold a comma, a quote or a line break (the others are numbers, fixed-format
# times, hex EUIs and the schema's names; units too when the payload contract's units hold none:
# normalize takes every unit from it, see _contract_units_plain).
_FREE_TEXT = {"device_name", "deduplication_id", "gateway_id"}
_UNIT_COLUMNS = {"unit", "unit_code"}
_JSON_STRINGS = {"time", "dev_eui", "device_name", "message_type", "field", "unit", "unit_code",
                 "deduplication_id", "gateway_id"}  # fmt: skip


def _csv_quoted(x: str) -> str:
    """``x`` quoted as :mod:`csv` quotes (QUOTE_MINIMAL): only when it holds a comma, a quote, CR or LF."""
    return (
        f"CASE WHEN instr({x}, ',') OR instr({x}, '\"') OR instr({x}, char(10)) OR instr({x}, char(13)) "
        f"THEN '\"' || replace({x}, '\"', '\"\"') || '\"' ELSE {x} END"
    )


def _contract_units_plain() -> bool:
    """True when no unit or unit code of the payload contract needs CSV quoting."""
    from gateway.contract.schema import load_schema

    texts: list[str] = []
    for message in load_schema().messages.values():
        for spec in message.fields:
            for item in (spec, *getattr(spec, "items", ())):
                texts += [getattr(item, "unit", None) or "", getattr(item, "unit_code", None) or ""]
    return not any(ch in text for text in texts for ch in ',"\r\n')


def _sqlite_csv_line() -> str:
    """One CSV line as one ``printf`` (NULL prints as nothing; REAL with 15 significant digits)."""
    free = _FREE_TEXT if _contract_units_plain() else _FREE_TEXT | _UNIT_COLUMNS
    args = []
    for c in CSV_COLUMNS:
        x = _SOURCE[c]
        if c == "value":  # a JSON string value goes out as its text (json_extract unquotes it)
            args.append(f"CASE WHEN substr({x}, 1, 1) = '\"' THEN {_csv_quoted(f'json_extract({x}, {chr(39)}${chr(39)})')} "
                        f"ELSE {x} END")  # fmt: skip
        elif c == "tags":  # JSON text: quoted unless it is {}
            args.append(f"CASE WHEN {x} = '{{}}' THEN {x} ELSE '\"' || replace({x}, '\"', '\"\"') || '\"' END")
        elif c in free:
            args.append(_csv_quoted(x))
        else:
            args.append(x)
    return "printf('" + ",".join(["%s"] * len(args)) + "' || char(10), " + ", ".join(args) + ")"


def _json_args(quote: str) -> list[str]:
    """Each key's value as JSON text: stored JSON (value, tags) as it is, strings quoted, NULL as null."""
    args = []
    for k in _JSON_KEYS:
        x = _SOURCE[k]
        if k in ("value", "tags") or k == "id":
            args.append(x)
        elif k in ("time", "dev_eui"):  # format_time and 16 hex digits, never NULL: nothing to escape
            args.append(f"'\"' || {x} || '\"'")
        elif k in _JSON_STRINGS:
            args.append(f"COALESCE({quote}({x}), 'null')")
        else:
            args.append(f"COALESCE(CAST({x} AS TEXT), 'null')")
    return args


def _json_template() -> str:
    return "{" + ", ".join(f'"{k}": %s' for k in _JSON_KEYS) + "}"


def export_sqlite(conn: sqlite3.Connection, fmt: str, f: ExportFilter, out: IO[bytes]) -> int:
    """Write the readings matching ``f`` to ``out``; returns how many. Each line is built by SQLite."""
    where, order, params = _where(f, "?")
    joined = "FROM reading_log AS v JOIN events AS e ON e.id = v.event_id"
    if fmt == "csv":
        out.write((",".join(CSV_COLUMNS) + "\n").encode())
        line = _sqlite_csv_line()
    else:
        line = f"printf('{_json_template()}' || char(10), {', '.join(_json_args('json_quote'))})"
    cur = conn.execute(f"SELECT {line} {joined} WHERE {where} ORDER BY {order}", params)
    count = 0
    while rows := cur.fetchmany(_BATCH):
        out.write("".join([r[0] for r in rows]).encode())
        count += len(rows)
    out.flush()
    return count


def _json_pg_parts() -> list[str]:
    parts = []
    for i, (k, arg) in enumerate(zip(_JSON_KEYS, _json_args("to_json"), strict=True)):
        head = ("{" if i == 0 else ", ") + f'"{k}": '
        parts += [f"'{head}'", arg if k not in ("value", "tags") else arg]
    return [*parts, "'}'"]


def export_postgres(conn: Any, fmt: str, f: ExportFilter, out: IO[bytes]) -> int:
    """The same on PostgreSQL: ``COPY (SELECT ...) TO STDOUT``, streamed to ``out``."""
    where, order, params = _where(f, "%s")
    joined = "FROM reading_log AS v JOIN events AS e ON e.id = v.event_id"
    if fmt == "csv":
        value = "CASE WHEN left(v.value, 1) = '\"' THEN v.value::json #>> '{}' ELSE v.value END"
        cols = ", ".join(f"{value if c == 'value' else _SOURCE[c]} AS {c}" for c in CSV_COLUMNS)
        sql = f"COPY (SELECT {cols} {joined} WHERE {where} ORDER BY {order}) TO STDOUT WITH (FORMAT csv, HEADER)"
    else:
        # CSV format with a delimiter and quote no JSON text holds raw: each line goes out as it is
        # (the text format would double every backslash of a JSON escape).
        sql = (
            f"COPY (SELECT {' || '.join(_json_pg_parts())} {joined} WHERE {where} ORDER BY {order}) "
            "TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"
        )
    with conn.cursor() as cur:
        with cur.copy(sql, params) as copy:
            for data in copy:
                out.write(data)
        return max(cur.rowcount, 0)  # from the command's status, "COPY <rows>"


def export(store: Any, fmt: str, f: ExportFilter, out: IO[bytes]) -> int:
    """Write ``store``'s readings matching ``f`` as ``fmt`` (``csv`` or ``jsonl``) to the byte stream
    ``out``; returns the number of readings. SQLite is read through its own read-only connection (a
    snapshot; writers go on); raises the driver's error (``BrokenPipeError`` when ``out`` closes)."""
    backend = store.backend
    if backend.dialect.name == "postgres":
        return export_postgres(backend.connection, fmt, f, out)
    if backend.path == ":memory:":
        return export_sqlite(backend.connection, fmt, f, out)
    conn = sqlite3.connect(f"file:{backend.path}?mode=ro", uri=True)
    try:
        return export_sqlite(conn, fmt, f, out)
    finally:
        conn.close()


