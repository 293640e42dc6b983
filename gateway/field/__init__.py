"""Tools a technician or network engineer runs: flashing, firmware builds, provisioning, frame decoding.

``flash`` and ``firmware_build`` put the device package on a board over USB (mpremote, esptool);
``micropython`` finds the MicroPython interpreter and ``mpy-cross``; ``inventory``, ``profiles``,
``provision`` and ``chirpstack_client`` provision nodes in ChirpStack through its gRPC API;
``lorawan_tools`` decodes LoRaWAN frames.

Rule (docs/architecture.md, checked by tests/test_architecture.py): this package never imports
:mod:`gateway.sim` or :mod:`gateway.cli`.
"""

from __future__ import annotations

__all__: list[str] = []
