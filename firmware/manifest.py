# Frozen-module manifest for a custom MicroPython build with citynode built in:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/citynode/firmware/manifest.py
include("$(PORT_DIR)/boards/manifest.py")
package("citynode", base_path="lib")
