# LoRa radio drivers. `base.Radio` holds the chip-agnostic logic; `sx127x.SX1276` and `sx126x.SX1262`
# add the registers / commands. Import the chip module you need; this package imports nothing heavy.
