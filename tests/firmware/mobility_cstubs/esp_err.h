// Host stub of ESP-IDF esp_err.h (names and signatures as in ESP-IDF v5.x). Written for citynode's tests.
#ifndef MOBILITY_STUB_ESP_ERR_H
#define MOBILITY_STUB_ESP_ERR_H
typedef int esp_err_t;
#define ESP_OK 0
#define ESP_FAIL -1
#define ESP_ERR_WIFI_NOT_INIT 0x3001
const char *esp_err_to_name(esp_err_t code);
#endif
