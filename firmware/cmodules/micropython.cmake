# All citynode user C modules. Point USER_C_MODULES here:
#   make BOARD=ESP32_GENERIC USER_C_MODULES=/path/to/citynode/firmware/cmodules/micropython.cmake
include(${CMAKE_CURRENT_LIST_DIR}/wifisniff/micropython.cmake)
