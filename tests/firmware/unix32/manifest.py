# FROZEN_MANIFEST of `make firmware-unix` (the 32-bit unix port that stands in for an ESP32 image):
# the unix port's own frozen modules, then exactly the citynode part a production ESP32 image freezes.
# firmware/lib/manifest.py is the one file this build and the ESP32 build (firmware/manifest.py) share.
include("$(PORT_DIR)/variants/manifest.py")
include("../../../firmware/lib/manifest.py")
