"""Simulated LoRaWAN AT modems for the sim boards' UART: RAK3172 (RUI3) and Seeed Wio-E5 (LoRa-E5 AT).

A node on a board whose LoRa module runs its own LoRaWAN stack (``boards/sim_rak3172.json``,
``boards/sim_wio_e5.json``) talks AT commands over its modem UART; :class:`gateway.sim.simhost.SimHost`
serves that UART from one of these simulators, which answer as the vendors' AT manuals show and do real
LoRaWAN 1.0.x (OTAA join, FCnt, MIC, encryption, RX1/RX2) to the network-server simulator
(:mod:`gateway.sim.nssim`) over the UDP virtual radio. The LoRaWAN stack inside is citynode's own MAC
run on CPython (:mod:`gateway.sim.modems.stack`): the modem simulators add only the AT dialects.
"""

from __future__ import annotations

from typing import Any

from gateway.sim.modems.base import ModemFaults, ModemSim
from gateway.sim.modems.rak3172 import Rak3172Sim
from gateway.sim.modems.stack import ModemStack, SendResult
from gateway.sim.modems.wio_e5 import WioE5Sim

__all__ = ["MODEMS", "ModemFaults", "ModemSim", "ModemStack", "Rak3172Sim", "SendResult", "WioE5Sim", "make_modem"]

MODEMS: dict[str, type[ModemSim]] = {"rak3172": Rak3172Sim, "wio_e5": WioE5Sim}


def make_modem(chip: str, stack: ModemStack, faults: dict[str, Any] | None = None) -> ModemSim:
    """The simulator for a board's ``radio.chip``; ValueError naming the chip if there is none."""
    try:
        cls = MODEMS[chip]
    except KeyError:
        raise ValueError(f"radio.chip: no modem simulator for {chip!r} (known: {', '.join(MODEMS)})") from None
    return cls(stack, ModemFaults.from_mapping(faults or {}))
