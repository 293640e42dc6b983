# wifisniff for Make-based MicroPython ports (kept for completeness: the ESP32 port builds with CMake,
# see micropython.cmake). Usage: make USER_C_MODULES=/path/to/citynode/firmware/cmodules
WIFISNIFF_MOD_DIR := $(USERMOD_DIR)

SRC_USERMOD_C += $(WIFISNIFF_MOD_DIR)/wifisniff.c
CFLAGS_USERMOD += -I$(WIFISNIFF_MOD_DIR)
