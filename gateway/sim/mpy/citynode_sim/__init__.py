# citynode_sim: the simulated side of a virtual citynode (MicroPython). The `sim` board's HAL and its
# peripherals (sim, simlink, sim*), the UDP virtual radio (udp), synthetic and replayed crowds
# (synthetic, replay). Shipped with the gateway, never frozen into an image and copied by
# `citynode flash` only to the virtual device; citynode's HAL factory imports it when the board is sim.
