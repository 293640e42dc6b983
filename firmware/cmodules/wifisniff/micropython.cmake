# wifisniff user C module (ESP32 port, CMake build). Included from ../micropython.cmake or directly:
#   make BOARD=ESP32_GENERIC USER_C_MODULES=/path/to/citynode/firmware/cmodules/micropython.cmake
add_library(usermod_wifisniff INTERFACE)

target_sources(usermod_wifisniff INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/wifisniff.c
)

target_include_directories(usermod_wifisniff INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}
)

target_link_libraries(usermod INTERFACE usermod_wifisniff)
