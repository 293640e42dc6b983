"""The node inventory: which nodes exist, what they do and where they are, read from CSV or YAML.

One node per CSV row (or YAML list item) with these fields:

===========  ========  =====================================================================
field        required  meaning
===========  ========  =====================================================================
dev_eui      yes       DevEUI, 16 hex digits (``-``, ``:`` and spaces between bytes allowed)
name         yes       device name in ChirpStack, at most 100 characters
role         yes       ``air_quality``, ``bin_fill``, ``passenger_count`` or ``crowd_count``
board        yes       board name (a ``boards/<board>.json`` when the checkout has boards)
lat, lon     no        WGS84 degrees; both or neither (YAML also: ``location: {lat, lon}``)
tags         no        CSV ``key=value;key=value``, YAML a mapping; CSV columns ``tag:<key>`` too
join_eui     no        JoinEUI (AppEUI), 16 hex digits; default ``0000000000000000``
app_key      no        OTAA AppKey, 32 hex digits; generated at provisioning when absent
gen_app_key  no        GenAppKey (root of the FUOTA multicast keys), 32 hex digits; generated
                       at provisioning when absent
===========  ========  =====================================================================

CSV headers are matched case-insensitively and accept the usual spellings (``DevEUI``, ``AppKey``,
``AppEUI``, ``GenAppKey``, ``latitude``). Blank rows and rows whose first cell starts with ``#`` are skipped.

Every problem in the file is collected and raised together as one :class:`InventoryError` whose
message names the file, the row (CSV: the line number a spreadsheet shows; YAML: the item number)
and the field, e.g. ``nodes.csv line 4, field dev_eui: expected 16 hex digits, got '70B3D5'``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

__all__ = [
    "DEFAULT_JOIN_EUI",
    "RESERVED_TAGS",
    "ROLES",
    "InventoryError",
    "Node",
    "Problem",
    "load_inventory",
    "parse_csv",
    "parse_yaml",
]

ROLES = ("air_quality", "bin_fill", "passenger_count", "crowd_count")
DEFAULT_JOIN_EUI = "0000000000000000"
# Tags that provisioning sets from the node's own fields; an inventory tag may not override them.
RESERVED_TAGS = frozenset({"role", "board", "lat", "lon", "managed_by"})
_MAX_NAME = 100  # ChirpStack v4 stores device names as varchar(100)

_ALIASES = {
    "deveui": "dev_eui",
    "dev_eui": "dev_eui",
    "eui": "dev_eui",
    "name": "name",
    "role": "role",
    "board": "board",
    "lat": "lat",
    "latitude": "lat",
    "lon": "lon",
    "lng": "lon",
    "longitude": "lon",
    "tags": "tags",
    "joineui": "join_eui",
    "join_eui": "join_eui",
    "appeui": "join_eui",
    "app_eui": "join_eui",
    "appkey": "app_key",
    "app_key": "app_key",
    "genappkey": "gen_app_key",
    "gen_app_key": "gen_app_key",
}
# Keys are never echoed in a message, not even a wrong one: it may be a real key with a typo.
_SECRET_FIELDS = frozenset({"app_key", "gen_app_key"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an inventory: where (``row``) and which ``field``."""

    file: str
    row: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file} {self.row}, field {self.field}: {self.message}"


# Board names, or board name -> the roles it carries (boards/<board>.json "roles"): a Mapping also
# checks each node's role against its board.
_Boards = Iterable[str] | Mapping[str, Sequence[str]] | None


class InventoryError(ConfigError):
    """The inventory has problems; ``problems`` lists all of them, the message shows them one per line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = [str(p) for p in self.problems[:20]]
        if len(self.problems) > len(shown):
            shown.append(f"... and {len(self.problems) - len(shown)} more")
        if len(self.problems) == 1:
            super().__init__(shown[0])
        else:
            super().__init__(f"{len(self.problems)} problems in the inventory:\n  " + "\n  ".join(shown))


@dataclass(frozen=True)
class Node:
    """One node of the inventory, validated and normalised (EUIs and keys in lower-case hex)."""

    dev_eui: str
    name: str
    role: str
    board: str
    lat: float | None = None
    lon: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    join_eui: str = DEFAULT_JOIN_EUI
    app_key: str | None = field(default=None, repr=False)  # never in repr: reprs end up in logs
    source: str = ""  # "nodes.csv line 4", for messages
    gen_app_key: str | None = field(default=None, repr=False)  # FUOTA: ChirpStack's 1.0.x multicast root


class _Row:
    """Collects the problems of one row while its fields are converted."""

    def __init__(self, file: str, row: str, problems: list[Problem]) -> None:
        self.file, self.row, self.problems = file, row, problems

    def bad(self, field_name: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.row, field_name, message))

    def text(self, data: Mapping[str, Any], key: str, *, required: bool) -> str:
        value = data.get(key)
        text = "" if value is None else str(value).strip()
        if not text and required:
            self.bad(key, "missing (required)")
        return text

    def hex_bytes(self, data: Mapping[str, Any], key: str, length: int, *, required: bool) -> str | None:
        if isinstance(data.get(key), (int, float)) and not isinstance(data.get(key), bool):
            self.bad(key, "YAML read this as a number (leading zeros lost); put it in quotes")
            return None
        text = self.text(data, key, required=required)
        if not text:
            return None
        digits = text.replace("-", "").replace(":", "").replace(" ", "").lower()
        if not digits or any(c not in "0123456789abcdef" for c in digits):
            self.bad(key, "not hexadecimal" if key in _SECRET_FIELDS else f"not hexadecimal: {text!r}")
            return None
        if len(digits) != length * 2:
            what = "key" if key in _SECRET_FIELDS else "EUI"
            shown = f"{len(digits)} digits" if key in _SECRET_FIELDS else f"{text!r} ({len(digits)} digits)"
            self.bad(key, f"{what} of wrong length: expected {length * 2} hex digits ({length} bytes), got {shown}")
            return None
        raw = bytes.fromhex(digits)
        return raw.hex()

    def coordinate(self, data: Mapping[str, Any], key: str, limit: float) -> float | None:
        text = self.text(data, key, required=False)
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            self.bad(key, f"not a number: {text!r}")
            return None
        if not math.isfinite(value) or not -limit <= value <= limit:
            self.bad(key, f"out of range -{limit:g}..{limit:g} degrees: {text}")
            return None
        return value


def _parse_tags(raw: Any, row: _Row) -> dict[str, str]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        items = [(str(k).strip(), "" if v is None else str(v).strip()) for k, v in raw.items()]
    elif isinstance(raw, str):
        items = []
        for part in raw.split(";"):
            if not part.strip():
                continue
            if "=" not in part:
                row.bad("tags", f"expected key=value, got {part.strip()!r}")
                continue
            key, _, value = part.partition("=")
            items.append((key.strip(), value.strip()))
    else:
        row.bad("tags", f"expected key=value;... or a mapping, got {type(raw).__name__}")
        return {}
    tags: dict[str, str] = {}
    for key, value in items:
        if not key:
            row.bad("tags", "empty tag key")
        elif key in RESERVED_TAGS:
            row.bad("tags", f"tag {key!r} is set by citynode from the node's own field; remove it")
        else:
            tags[key] = value
    return tags


def _node(data: Mapping[str, Any], file: str, row_label: str, problems: list[Problem],
          known_boards: frozenset[str] | None,
          board_roles: Mapping[str, Sequence[str]] | None = None) -> Node | None:
    row = _Row(file, row_label, problems)
    before = len(problems)
    dev_eui = row.hex_bytes(data, "dev_eui", 8, required=True)
    if dev_eui == "0" * 16:
        row.bad("dev_eui", "0000000000000000 is a placeholder, not a DevEUI")
    name = row.text(data, "name", required=True)
    if len(name) > _MAX_NAME:
        row.bad("name", f"longer than {_MAX_NAME} characters")
    role = row.text(data, "role", required=True)
    if role and role not in ROLES:
        row.bad("role", f"unknown role {role!r} (known: {', '.join(ROLES)})")
    board = row.text(data, "board", required=True)
    if board and known_boards is not None and board not in known_boards:
        row.bad("board", f"unknown board {board!r} (known: {', '.join(sorted(known_boards)) or 'none'})")
    elif board and role in ROLES and board_roles and board_roles.get(board) and role not in board_roles[board]:
        row.bad("role", f"board {board} cannot carry role {role} "
                f"(boards/{board}.json roles: {', '.join(board_roles[board])})")
    lat = row.coordinate(data, "lat", 90.0)
    lon = row.coordinate(data, "lon", 180.0)
    has_lat, has_lon = bool(row.text(data, "lat", required=False)), bool(row.text(data, "lon", required=False))
    if has_lat != has_lon:
        row.bad("lon" if has_lat else "lat", "missing: give both lat and lon, or neither")
    tags = _parse_tags(data.get("tags"), row)
    join_eui = row.hex_bytes(data, "join_eui", 8, required=False) or DEFAULT_JOIN_EUI
    app_key = row.hex_bytes(data, "app_key", 16, required=False)
    gen_app_key = row.hex_bytes(data, "gen_app_key", 16, required=False)
    if len(problems) > before:
        return None
    assert dev_eui is not None
    return Node(dev_eui, name, role, board, lat, lon, tags, join_eui, app_key, f"{file} {row_label}",
                gen_app_key)


def _finish(nodes: Iterable[Node], file: str, problems: list[Problem]) -> list[Node]:
    seen: dict[str, Node] = {}
    result = []
    for node in nodes:
        if node.dev_eui in seen:
            first = seen[node.dev_eui].source.removeprefix(file + " ")
            problems.append(
                Problem(file, node.source.removeprefix(file + " "), "dev_eui",
                        f"duplicate DevEUI {node.dev_eui} (first at {first})")
            )
            continue
        seen[node.dev_eui] = node
        result.append(node)
    if problems:
        raise InventoryError(problems)
    return result


def parse_csv(text: str, file: str = "inventory.csv", *, known_boards: _Boards = None) -> list[Node]:
    """Parse CSV inventory text; raise :class:`InventoryError` listing every problem."""
    boards = frozenset(known_boards) if known_boards is not None else None
    roles = known_boards if isinstance(known_boards, Mapping) else None
    problems: list[Problem] = []
    reader = csv.reader(text.splitlines(keepends=True))
    header: list[str] | None = None
    nodes: list[Node] = []
    for cells in reader:
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        line = f"line {reader.line_num}"
        if header is None:
            header = []
            for cell in cells:
                key = cell.strip().lower().replace(" ", "_").replace("-", "_")
                if key.startswith("tag:") and key[4:]:
                    header.append("tag:" + cell.strip()[4:].strip())
                elif key in _ALIASES:
                    header.append(_ALIASES[key])
                else:
                    problems.append(Problem(file, line, cell.strip() or "(empty)",
                                            f"unknown column (known: {', '.join(sorted(set(_ALIASES.values())))}; "
                                            "use tag:<key> for your own tags)"))
                    header.append("")
            if problems:
                raise InventoryError(problems)
            continue
        if len(cells) > len(header):
            problems.append(Problem(file, line, "(row)", f"{len(cells)} cells but the header has {len(header)} columns"))
            continue
        data: dict[str, Any] = {}
        column_tags: dict[str, str] = {}
        for key, cell in zip(header, cells):
            if key.startswith("tag:"):
                if cell.strip():
                    column_tags[key[4:]] = cell.strip()
            else:
                data[key] = cell
        if column_tags:
            row = _Row(file, line, problems)
            merged = _parse_tags(data.get("tags"), row)
            merged.update(_parse_tags(column_tags, row))
            data["tags"] = merged
        node = _node(data, file, line, problems, boards, roles)
        if node is not None:
            nodes.append(node)
    if header is None:
        raise InventoryError([Problem(file, "line 1", "(header)", "empty file: no header row")])
    return _finish(nodes, file, problems)


def parse_yaml(text: str, file: str = "inventory.yaml", *, known_boards: _Boards = None) -> list[Node]:
    """Parse YAML inventory text (a list of nodes, or ``{nodes: [...]}``); raise :class:`InventoryError`."""
    import yaml

    boards = frozenset(known_boards) if known_boards is not None else None
    roles = known_boards if isinstance(known_boards, Mapping) else None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "line ?"
        raise InventoryError([Problem(file, where, "(yaml)", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if isinstance(doc, Mapping):
        doc = doc.get("nodes")
    if not isinstance(doc, list):
        raise InventoryError([Problem(file, "top level", "nodes", "expected a list of nodes or a mapping with 'nodes:'")])
    problems: list[Problem] = []
    nodes: list[Node] = []
    for index, item in enumerate(doc, start=1):
        label = f"node {index}"
        if not isinstance(item, Mapping):
            problems.append(Problem(file, label, "(node)", f"expected a mapping, got {type(item).__name__}"))
            continue
        data: dict[str, Any] = {}
        for key, value in item.items():
            norm = str(key).strip().lower().replace(" ", "_").replace("-", "_")
            if norm == "location":
                if isinstance(value, Mapping):
                    data["lat"], data["lon"] = value.get("lat"), value.get("lon")
                else:
                    problems.append(Problem(file, label, "location", "expected a mapping {lat: ..., lon: ...}"))
            elif norm in _ALIASES:
                data[_ALIASES[norm]] = value
            else:
                problems.append(Problem(file, label, str(key), "unknown field"))
        node = _node(data, file, label, problems, boards, roles)
        if node is not None:
            nodes.append(node)
    return _finish(nodes, file, problems)


def load_inventory(path: str | Path, *, known_boards: _Boards = None) -> list[Node]:
    """Read an inventory file; ``.csv`` is CSV, ``.yaml`` / ``.yml`` is YAML. Errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets write a BOM
    except OSError as exc:
        raise ConfigError(f"inventory {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"inventory {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return parse_csv(text, path.name, known_boards=known_boards)
    if suffix in (".yaml", ".yml"):
        return parse_yaml(text, path.name, known_boards=known_boards)
    raise ConfigError(f"inventory {path}: unknown file type {suffix or '(none)'}; use .csv, .yaml or .yml")
