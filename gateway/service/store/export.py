"""Exports of the reading log as CSV or JSON lines, streamed: memory stays flat at any size.

The rows are formatted by the database, not by Python objects per reading: SQLite builds each
line with one ``printf`` and joins a page of lines into one text (``group_concat``), which Python
writes out as it is; PostgreSQL streams ``COPY ... TO STDOUT`` straight to the output. The stored
``value`` and ``tags`` are JSON text already and go out as they are (a string value unquoted in CSV).
Text that needs CSV quoting or JSON escaping (a device name with a comma ...) is quoted as
:mod:`csv` and ``json_quote`` would: see :func:`export_sqlite` for how pages without any go faster.
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


# Columns whose text may hold a comma, a quote or a line break: what the device, ChirpStack or a
# codec's ``object`` named (the others are numbers, fixed-format times, hex EUIs, JSON; units too
# when the payload contract's units hold none: normalize takes every unit from it, see
# _contract_units_plain).
_FREE_TEXT = {"device_name", "deduplication_id", "gateway_id", "message_type", "field"}
_UNIT_COLUMNS = {"unit", "unit_code"}
_JSON_STRINGS = {"time", "dev_eui", "device_name", "message_type", "field", "unit", "unit_code",
                 "deduplication_id", "gateway_id"}  # fmt: skip
# What makes a text need CSV quoting (as csv's QUOTE_MINIMAL quotes) or JSON escaping (json_quote):
# GLOB patterns, bound as parameters.
_CSV_SPECIAL = '*[,"\n\r]*'
_JSON_CHARS = '"\\' + "".join(chr(c) for c in range(1, 32))
_JSON_SPECIAL = '*["\\\x01-\x1f]*'  # a range: GLOB tries each class member in turn
# Readings per SELECT: the first page small (the first lines come at once, ``export | head`` ends
# at once), each next one twice as big up to 5,000 (about 1 MB of CSV, 2 MB of JSON lines).
# Bigger pages were slower, not faster: with 20,000 per page 1M readings (the bench's store, 2026-12-06)
# took ~5 % (CSV) and ~10 % (JSON lines) longer, at a peak RSS of 56 and 76 MiB against about 41 and 50.
_FIRST_PAGE, _CHUNK = 1_000, 5_000
# What the fast JSON line writes as it is (a string between quotes, a number): NULL takes the other line.
_EVENT_COLUMNS_NULL_IN_JSON = ("device_name", "message_type", "dedup_id", "gateway_id", "f_cnt", "rssi", "snr",
                               "spreading_factor", "frequency", "gateway_count")  # fmt: skip


def _csv_quoted(x: str) -> str:
    """``x`` quoted as :mod:`csv` quotes (QUOTE_MINIMAL): only when it holds a comma, a quote, CR or LF."""
    return (
        f"CASE WHEN instr({x}, ',') OR instr({x}, '\"') OR instr({x}, char(10)) OR instr({x}, char(13)) "
        f"THEN '\"' || replace({x}, '\"', '\"\"') || '\"' ELSE {x} END"
    )


def _contract_plain(special: str) -> bool:
    """True when no unit or unit code of the payload contract holds a character of ``special``."""
    from gateway.contract.schema import load_schema

    texts: list[str] = []
    for message in load_schema().messages.values():
        for spec in message.fields:
            for item in (spec, *getattr(spec, "items", ())):
                texts += [getattr(item, "unit", None) or "", getattr(item, "unit_code", None) or ""]
    return not any(ch in special for text in texts for ch in text)


def _contract_units_plain() -> bool:
    """True when no unit or unit code of the payload contract needs CSV quoting."""
    return _contract_plain(',"\r\n')


def _sqlite_csv_line(fast: bool) -> str:
    """One CSV line as one ``printf`` (NULL prints as nothing; REAL with 15 significant digits).

    ``fast``: the free-text columns as they are, for readings whose texts need no quoting (the
    caller checks); otherwise each is quoted where it needs it."""
    free = _FREE_TEXT if _contract_units_plain() else _FREE_TEXT | _UNIT_COLUMNS
    args = []
    for c in CSV_COLUMNS:
        x = _SOURCE[c]
        if c == "value":  # a JSON string value goes out as its text (json_extract unquotes it)
            args.append(f"CASE WHEN unicode({x}) = 34 THEN {_csv_quoted(f'json_extract({x}, {chr(39)}${chr(39)})')} "
                        f"ELSE {x} END")  # fmt: skip
        elif c == "tags":  # JSON text: quoted unless it is {}
            args.append(f"CASE WHEN {x} = '{{}}' THEN {x} ELSE '\"' || replace({x}, '\"', '\"\"') || '\"' END")
        elif c in free and not (fast and c in _FREE_TEXT):  # the page's check covers _FREE_TEXT
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


def _sqlite_json_line(fast: bool) -> str:
    """One JSON line as one ``printf``. ``fast``: for readings of uplinks whose texts need no
    escaping and whose strings and numbers are not NULL (the caller checks): the strings go between
    quotes written in the template and the numbers as they are, about twice as fast as quoting and
    testing each. A unit may be NULL (a unitless field)."""
    if not fast:
        return f"printf('{_json_template()}' || char(10), {', '.join(_json_args('json_quote'))})"
    units_plain = _contract_plain(_JSON_CHARS)
    parts, args = [], []
    for k in _JSON_KEYS:
        x = _SOURCE[k]
        if k in ("unit", "unit_code"):
            parts.append(f'"{k}": %s')
            args.append(f"""ifnull('"' || {x} || '"', 'null')""" if units_plain else f"ifnull(json_quote({x}), 'null')")
        elif k in _JSON_STRINGS:
            parts.append(f'"{k}": "%s"')
            args.append(x)
        else:  # id, value and tags (JSON text), numbers
            parts.append(f'"{k}": %s')
            args.append(x)
    return "printf('{" + ", ".join(parts) + "}' || char(10), " + ", ".join(args) + ")"


def sqlite_statements(fmt: str, f: ExportFilter) -> tuple[dict[bool, str], str]:
    """The page statements (by ``fast``) and the page check that :func:`export_sqlite` runs.

    A page's parameters: the special-character pattern, the filter's, the keyset (last event and
    reading: ``(e, e, v)`` with a device, ``(v,)`` without), the page size. The check's: the page's
    lowest and highest event id, the device (with a device filter), the pattern four times."""
    where, order, _ = _where(f, "?")
    if fmt == "csv":
        lines = {fast: _sqlite_csv_line(fast) for fast in (True, False)}
        nulls = ""
    else:
        lines = {fast: _sqlite_json_line(fast) for fast in (True, False)}
        nulls = "".join(f"{c} IS NULL OR " for c in _EVENT_COLUMNS_NULL_IN_JSON)
    # The next page starts after the last row of this one, in the page's order: (event, reading)
    # for a device (its events' index gives the range), the reading for the rest. Its last reading is
    # the page's newest, as reading ids grow with event ids (queries.readings pages the same way).
    # group_concat joins the rows in the order the ordered subquery yields them.
    after = "e.id >= ? AND (e.id > ? OR v.id > ?)" if f.device else "v.id > ?"
    pages = {
        fast: f"SELECT CAST(group_concat(line, '') AS BLOB), count(*), min(eid), max(eid), max(vid), max(bad) "
        f"FROM (SELECT {line} AS line, e.id AS eid, v.id AS vid, v.field GLOB ? AS bad "
        f"FROM reading_log AS v JOIN events AS e ON e.id = v.event_id "
        f"WHERE {where} AND {after} ORDER BY {order} LIMIT ?)"
        for fast, line in lines.items()
    }
    device = " AND dev_eui = ?" if f.device else ""
    # Only uplinks hold readings: the joins, status and other events in the range (no names, no radio
    # metadata) are not the page's. ``+kind``: the range of ids (or of the device's ids) is the
    # index to use, not (kind, dedup_id), which would read every uplink for each page.
    check = (
        f"SELECT EXISTS (SELECT 1 FROM events WHERE id BETWEEN ? AND ?{device} AND +kind = 'up' AND ({nulls}"
        "device_name GLOB ? OR message_type GLOB ? OR dedup_id GLOB ? OR gateway_id GLOB ?))"
    )
    return pages, check


def export_sqlite(conn: sqlite3.Connection, fmt: str, f: ExportFilter, out: IO[bytes]) -> int:
    """Write the readings matching ``f`` to ``out``; returns how many. Each line is built by SQLite,
    and a page of lines at a time (up to :data:`_CHUNK`) is joined by it (``group_concat`` over the
    ordered page): Python only writes the text out, with no object per reading.

    Each page is first built by the fast line (free text as it is), with a flag for a field name
    that needs quoting; the page's uplinks (one index range) are then checked for a device name,
    message type, deduplication or gateway id that does (and, for JSON, for a NULL). Either found,
    the page is built again with the line that quotes every such text where it needs it (rare:
    names with a comma, uplinks without radio metadata)."""
    _, _, params = _where(f, "?")
    special = _CSV_SPECIAL if fmt == "csv" else _JSON_SPECIAL
    if fmt == "csv":
        out.write((",".join(CSV_COLUMNS) + "\n").encode())
    pages, check = sqlite_statements(fmt, f)
    count, last_event, last_reading, size = 0, 0, 0, _FIRST_PAGE
    device_param = params[:1] if f.device else []
    while True:
        keyset = [last_event, last_event, last_reading] if f.device else [last_reading]
        page = [special, *params, *keyset, size]
        text, n, low_event, last_event, last_reading, bad = conn.execute(pages[True], page).fetchone()
        if not n:
            break
        if bad or conn.execute(check, [low_event, last_event, *device_param, *[special] * 4]).fetchone()[0]:
            text = conn.execute(pages[False], page).fetchone()[0]
        out.write(text)
        count += n
        size = min(2 * size, _CHUNK)
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
