# Frozen-module manifest for a production ESP32 image with citynode built in:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/citynode/firmware/manifest.py \
#        USER_C_MODULES=/path/to/citynode/firmware/cmodules/micropython.cmake
# The port's own modules, then the device package (lib/manifest.py, shared with `make firmware-unix`).
include("$(PORT_DIR)/boards/manifest.py")
include("lib/manifest.py")
