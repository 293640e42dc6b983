"""The FUOTA keys of the node's config bundle (citynode.config), checked at boot on MicroPython: all are
optional; gen_app_key is 32 hex digits (the GenAppKey ChirpStack also holds), fuota_pub 64 (the
Ed25519 public key of `citynode fuota keygen`); a bad value names its field."""

from __future__ import annotations

import json

import pytest

BASE = {"role": "bin_fill", "board": "sim"}
CODE = """
import json, sys
from citynode import config
try:
    c = config.validate(json.loads(sys.stdin.readline()))
    print(json.dumps(["ok", c.get("gen_app_key"), c.get("fuota_pub")]))
except config.ConfigError as e:
    print(json.dumps(["error", e.field, str(e)]))
"""


@pytest.mark.parametrize(("extra", "want"), [
    ({}, ["ok", None, None]),
    ({"gen_app_key": "00" * 16, "fuota_pub": "ab" * 32}, ["ok", "00" * 16, "ab" * 32]),
    ({"gen_app_key": "00" * 15}, ["error", "gen_app_key", "config gen_app_key: expected 32 hex digits"]),
    ({"gen_app_key": "zz" * 16}, ["error", "gen_app_key", "config gen_app_key: expected 32 hex digits"]),
    ({"fuota_pub": "ab" * 16}, ["error", "fuota_pub", "config fuota_pub: expected 64 hex digits"]),
    ({"fuota_versions": [1, 2, 3]}, ["error", "fuota_versions",
                                     "config fuota_versions: expected [TS003, TS004, TS005] versions, each 1 or 2"]),
    ({"fuota_block_max": 10}, ["error", "fuota_block_max", "config fuota_block_max: expected an integer 1024..1048576, got 10"]),
])
def test_fuota_config_keys(micropython, extra, want) -> None:
    assert micropython.eval_json(CODE, stdin=json.dumps(dict(BASE, **extra)) + "\n") == want
