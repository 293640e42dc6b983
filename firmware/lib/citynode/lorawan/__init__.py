# citynode LoRaWAN 1.0.4 Class A stack (EU868, RP002-1.0.x). Kept tiny on purpose: submodules are
# imported only when used, so a node that talks to an AT modem never loads the crypto or the MAC.
#
# One exception tree for the whole stack; every message says what was wrong with which frame field.


class LoRaWANError(Exception):
    """Root of every error the LoRaWAN layer raises on purpose."""


class FrameError(LoRaWANError):
    """A PHYPayload is malformed: wrong length, wrong MType/Major, bad field (the message names it)."""


class MICError(LoRaWANError):
    """The MIC does not match: wrong key, wrong DevAddr/FCnt, or a corrupted frame."""


class ReplayError(LoRaWANError):
    """A frame counter was already seen (replayed or old frame); its MIC was valid."""


class MACCommandError(LoRaWANError):
    """A MAC command could not be encoded or decoded (unknown CID, truncated, field out of range)."""
