"""Inventory files: every good form is read the same way, every bad field is named with file and row."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.field.inventory import (
    DEFAULT_JOIN_EUI,
    InventoryError,
    Node,
    load_inventory,
    parse_csv,
    parse_yaml,
)

DATA = Path(__file__).parent / "data"
HEADER = "dev_eui,name,role,board,lat,lon,tags,join_eui,app_key\n"
GOOD = "70b3d57ed0000001,aq-1,air_quality,esp32-devkit,51.5,7.1,,,\n"


def test_example_csv_and_yaml_describe_the_same_nodes() -> None:
    from_csv = load_inventory(DATA / "nodes.csv")
    from_yaml = load_inventory(DATA / "nodes.yaml")
    strip = lambda nodes: [(n.dev_eui, n.name, n.role, n.board, n.lat, n.lon, dict(n.tags), n.join_eui, n.app_key)
                           for n in nodes]
    assert strip(from_csv) == strip(from_yaml)
    assert [n.role for n in from_csv] == ["air_quality", "bin_fill", "passenger_count", "crowd_count"]


def test_example_csv_is_normalised() -> None:
    aq, bin_, bus, _crowd = load_inventory(DATA / "nodes.csv")
    assert aq == Node(
        dev_eui="70b3d57ed0000001", name="aq-buer-markt", role="air_quality", board="heltec_wifi_lora_32_v3",
        lat=51.5781, lon=7.0568, tags={"district": "Buer", "owner": "Umweltamt"},
        join_eui=DEFAULT_JOIN_EUI, app_key=None, source="nodes.csv line 3",
    )
    assert bin_.join_eui == "70b3d57ed0001000"
    assert (bus.lat, bus.lon, bus.app_key) == (None, None, "2b7e151628aed2a6abf7158809cf4f3c")


def test_app_key_is_not_in_the_repr() -> None:
    bus = load_inventory(DATA / "nodes.csv")[2]
    assert "2b7e1516" not in repr(bus)


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        # header spellings people use in spreadsheets
        ("DevEUI,Name,Role,Board,Latitude,Longitude\n", "70B3D57ED0000001,a,bin_fill,b,1,2\n",
         {"dev_eui": "70b3d57ed0000001", "lat": 1.0, "lon": 2.0}),
        ("deveui,name,role,board,AppEUI,AppKey\n", "70b3d57ed0000001,a,bin_fill,b,0102030405060708," + "AA" * 16 + "\n",
         {"join_eui": "0102030405060708", "app_key": "aa" * 16}),
        # DevEUIs as printed on labels
        ("dev_eui,name,role,board\n", "70-B3-D5-7E-D0-00-00-01,a,bin_fill,b\n", {"dev_eui": "70b3d57ed0000001"}),
        ("dev_eui,name,role,board\n", "70:b3:d5:7e:d0:00:00:01,a,bin_fill,b\n", {"dev_eui": "70b3d57ed0000001"}),
        # tags from the tags column and from tag:<key> columns
        ("dev_eui,name,role,board,tags,tag:district\n", "70b3d57ed0000001,a,bin_fill,b,owner=GE; x = 1 ,Buer\n",
         {"tags": {"owner": "GE", "x": "1", "district": "Buer"}}),
        # no location is fine (a node on a bus)
        ("dev_eui,name,role,board,lat,lon\n", "70b3d57ed0000001,a,passenger_count,b,,\n", {"lat": None, "lon": None}),
        ("dev_eui,name,role,board\n", "70b3d57ed0000001,a,crowd_count,b\n", {"join_eui": DEFAULT_JOIN_EUI, "app_key": None}),
    ],
)
def test_good_csv_rows(header: str, row: str, expected: dict) -> None:
    (node,) = parse_csv(header + row)
    for key, value in expected.items():
        assert getattr(node, key) == value, key


def test_comments_and_blank_rows_are_skipped_and_line_numbers_stay_true() -> None:
    text = "# comment\n" + HEADER + "\n" + GOOD + "# another\n" + "70b3d57ed0000002,b,nope,esp32,,,,,\n"
    with pytest.raises(InventoryError, match="inventory.csv line 6, field role"):
        parse_csv(text)


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("70b3d57ed000001,a,bin_fill,b,,,,,", "dev_eui", "EUI of wrong length: expected 16 hex digits"),
        ("70b3d57ed00000011,a,bin_fill,b,,,,,", "dev_eui", "EUI of wrong length"),
        ("70b3d57ed000000g,a,bin_fill,b,,,,,", "dev_eui", "not hexadecimal"),
        ("0000000000000000,a,bin_fill,b,,,,,", "dev_eui", "placeholder"),
        (",a,bin_fill,b,,,,,", "dev_eui", "missing"),
        ("70b3d57ed0000001,,bin_fill,b,,,,,", "name", "missing"),
        ("70b3d57ed0000001," + "n" * 101 + ",bin_fill,b,,,,,", "name", "longer than 100"),
        ("70b3d57ed0000001,a,,b,,,,,", "role", "missing"),
        ("70b3d57ed0000001,a,bin-fill,b,,,,,", "role", "unknown role 'bin-fill'"),
        ("70b3d57ed0000001,a,parking,b,,,,,", "role", "known: air_quality, bin_fill, passenger_count, crowd_count"),
        ("70b3d57ed0000001,a,bin_fill,,,,,,", "board", "missing"),
        ("70b3d57ed0000001,a,bin_fill,b,91,7,,,", "lat", "out of range -90..90"),
        ("70b3d57ed0000001,a,bin_fill,b,51,181,,,", "lon", "out of range -180..180"),
        ("70b3d57ed0000001,a,bin_fill,b,51.5N,7,,,", "lat", "not a number"),
        ("70b3d57ed0000001,a,bin_fill,b,nan,7,,,", "lat", "out of range"),
        ("70b3d57ed0000001,a,bin_fill,b,51,,,,", "lon", "give both lat and lon"),
        ("70b3d57ed0000001,a,bin_fill,b,,7,,,", "lat", "give both lat and lon"),
        ("70b3d57ed0000001,a,bin_fill,b,,,district,,", "tags", "expected key=value"),
        ("70b3d57ed0000001,a,bin_fill,b,,,=x,,", "tags", "empty tag key"),
        ("70b3d57ed0000001,a,bin_fill,b,,,role=air_quality,,", "tags", "set by citynode"),
        ("70b3d57ed0000001,a,bin_fill,b,,,,0102,", "join_eui", "EUI of wrong length"),
        ("70b3d57ed0000001,a,bin_fill,b,,,,," + "00" * 15, "app_key", "key of wrong length: expected 32 hex digits"),
        ("70b3d57ed0000001,a,bin_fill,b,,,,," + "00" * 17, "app_key", "key of wrong length"),
        ("70b3d57ed0000001,a,bin_fill,b,,,,," + "xy" * 16, "app_key", "not hexadecimal"),
        ("70b3d57ed0000001,a,bin_fill,b,,,,,,extra", "(row)", "10 cells but the header has 9 columns"),
    ],
)
def test_bad_csv_fields_are_named_with_file_line_and_field(row: str, field: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_csv(HEADER + row + "\n", "nodes.csv")
    (problem,) = info.value.problems
    assert (problem.file, problem.row, problem.field) == ("nodes.csv", "line 2", field)
    assert message in problem.message
    assert str(info.value).startswith(f"nodes.csv line 2, field {field}: ")


def test_a_wrong_key_is_never_echoed() -> None:
    secret = "2b7e151628aed2a6abf7158809cf4f"  # 15 bytes: a real key with a digit pair lost
    with pytest.raises(InventoryError) as info:
        parse_csv(HEADER + f"70b3d57ed0000001,a,bin_fill,b,,,,,{secret}\n")
    assert secret not in str(info.value)


def test_duplicate_dev_eui_names_both_rows() -> None:
    text = HEADER + GOOD + "70B3-D57E-D000-0001,other,bin_fill,b,,,,,\n"
    with pytest.raises(InventoryError, match=r"line 3, field dev_eui: duplicate DevEUI 70b3d57ed0000001 \(first at line 2\)"):
        parse_csv(text)


def test_all_problems_are_reported_at_once() -> None:
    text = HEADER + "x,a,air,b,,,,,\n" + GOOD + GOOD
    with pytest.raises(InventoryError) as info:
        parse_csv(text)
    assert [(p.row, p.field) for p in info.value.problems] == [
        ("line 2", "dev_eui"), ("line 2", "role"), ("line 4", "dev_eui")
    ]
    assert str(info.value).startswith("3 problems in the inventory:\n")


def test_unknown_column_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InventoryError, match="field lattitude: unknown column .*use tag:<key>"):
        parse_csv("dev_eui,name,role,board,lattitude\n")


def test_empty_csv_is_an_error() -> None:
    with pytest.raises(InventoryError, match="no header row"):
        parse_csv("")


def test_known_boards_are_checked_when_given() -> None:
    with pytest.raises(InventoryError, match="unknown board 'b' \\(known: esp32-devkit, ttgo-lora32\\)"):
        parse_csv(HEADER + "70b3d57ed0000001,a,bin_fill,b,,,,,\n", known_boards={"esp32-devkit", "ttgo-lora32"})


@pytest.mark.parametrize(
    ("yaml_text", "row", "field", "message"),
    [
        ("- {dev_eui: 70b3d57ed0000001, name: a, role: bin_fill, board: b, colour: red}", "node 1", "colour",
         "unknown field"),
        ("- {dev_eui: 1234567890123456, name: a, role: bin_fill, board: b}", "node 1", "dev_eui", "put it in quotes"),
        ("- {dev_eui: '70b3d57ed0000001', name: a, role: bin_fill, board: b, location: here}", "node 1", "location",
         "expected a mapping"),
        ("- {dev_eui: '70b3d57ed0000001', name: a, role: bin_fill, board: b, tags: [a, b]}", "node 1", "tags",
         "expected key=value;... or a mapping"),
        ("- just a string", "node 1", "(node)", "expected a mapping"),
        ("nodes: 3", "top level", "nodes", "expected a list"),
        ("- {dev_eui: [unclosed", "line 1", "(yaml)", "not valid YAML"),
    ],
)
def test_bad_yaml_is_named_with_item_and_field(yaml_text: str, row: str, field: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_yaml(yaml_text, "nodes.yaml")
    problem = info.value.problems[0]
    assert (problem.file, problem.row, problem.field) == ("nodes.yaml", row, field)
    assert message in problem.message


def test_yaml_plain_list_and_location_keys() -> None:
    (node,) = parse_yaml("- {dev_eui: '70b3d57ed0000001', name: a, role: bin_fill, board: b, lat: 1, lon: 2}")
    assert (node.lat, node.lon) == (1.0, 2.0)


def test_load_inventory_checks_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_inventory(tmp_path / "absent.csv")
    (tmp_path / "nodes.txt").write_text(HEADER)
    with pytest.raises(ConfigError, match="unknown file type .txt"):
        load_inventory(tmp_path / "nodes.txt")
    (tmp_path / "bom.csv").write_text("\ufeff" + HEADER + GOOD, encoding="utf-8")
    assert load_inventory(tmp_path / "bom.csv")[0].dev_eui == "70b3d57ed0000001"
