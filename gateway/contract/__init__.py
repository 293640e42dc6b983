"""The payload contract: what a node sends and what a reading is.

``schema`` reads ``codecs/schema.json`` (the single source of truth of every payload), ``codec`` encodes
and decodes the strict CBOR profile, ``normalize`` turns a decoded message into unit-labelled
:class:`~gateway.contract.records.Reading` values, ``codegen`` writes the generated codecs (ChirpStack
JavaScript, firmware tables) and ``vectors`` loads the shared test vectors.

Rule (docs/architecture.md, checked by tests/test_architecture.py): this package imports nothing of
``gateway`` but :mod:`gateway.errors` and :mod:`gateway.paths`.
"""

from __future__ import annotations

__all__: list[str] = []
