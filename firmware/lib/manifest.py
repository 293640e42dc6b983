# The device package as frozen into a citynode image: included by firmware/manifest.py (ESP32) and by
# `make firmware-unix` (tests/firmware/unix32/manifest.py). Simulators (citynode_sim) are never frozen.
package("citynode")
