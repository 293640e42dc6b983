# Host stand-in of an ESP32's memory-mapped ROMFS flash partition, as a MicroPython user C module of the
# unix port (`make firmware-unix` links it beside esp_host; the ESP32 build never sees this directory).
ROMFS_HOST_DIR := $(realpath $(USERMOD_DIR))

SRC_USERMOD_C += $(ROMFS_HOST_DIR)/romfs_host.c
