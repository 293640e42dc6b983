# Host shim of the ESP-IDF Wi-Fi calls firmware/cmodules/wifisniff uses, as a MicroPython user C module
# of the unix port (`make firmware-unix` links it beside wifisniff; the ESP32 build never sees this
# directory). The ESP-IDF headers are the test stubs in ../../mobility_cstubs, searched after MicroPython's
# own include paths (that directory also stubs py/runtime.h for the plain-C harness, which must lose).
ESP_HOST_DIR := $(realpath $(USERMOD_DIR))

SRC_USERMOD_C += $(ESP_HOST_DIR)/esp_host.c
CFLAGS_USERMOD += -idirafter $(ESP_HOST_DIR)/../../mobility_cstubs
