// Host stub of the ESP-IDF esp_wifi.h promiscuous-mode API (v5.x, ESP32 layout of wifi_pkt_rx_ctrl_t).
// Written for citynode's tests; field names and widths follow the ESP-IDF API reference.
#ifndef MOBILITY_STUB_ESP_WIFI_H
#define MOBILITY_STUB_ESP_WIFI_H
#include <stdbool.h>
#include <stdint.h>
#include "esp_err.h"

typedef enum {
    WIFI_PKT_MGMT,
    WIFI_PKT_CTRL,
    WIFI_PKT_DATA,
    WIFI_PKT_MISC,
} wifi_promiscuous_pkt_type_t;

typedef struct {
    signed rssi : 8;
    unsigned rate : 5;
    unsigned : 1;
    unsigned sig_mode : 2;
    unsigned : 16;
    unsigned mcs : 7;
    unsigned cwb : 1;
    unsigned : 16;
    unsigned smoothing : 1;
    unsigned not_sounding : 1;
    unsigned : 1;
    unsigned aggregation : 1;
    unsigned stbc : 2;
    unsigned fec_coding : 1;
    unsigned sgi : 1;
    signed noise_floor : 8;
    unsigned ampdu_cnt : 8;
    unsigned channel : 4;
    unsigned secondary_channel : 4;
    unsigned : 8;
    unsigned timestamp : 32;
    unsigned : 32;
    unsigned : 31;
    unsigned ant : 1;
    unsigned sig_len : 12;
    unsigned : 12;
    unsigned rx_state : 8;
} wifi_pkt_rx_ctrl_t;

typedef struct {
    wifi_pkt_rx_ctrl_t rx_ctrl;
    uint8_t payload[];
} wifi_promiscuous_pkt_t;

typedef struct {
    uint32_t filter_mask;
} wifi_promiscuous_filter_t;

#define WIFI_PROMIS_FILTER_MASK_ALL (0xFFFFFFFF)
#define WIFI_PROMIS_FILTER_MASK_MGMT (1)
#define WIFI_PROMIS_FILTER_MASK_CTRL (1 << 1)
#define WIFI_PROMIS_FILTER_MASK_DATA (1 << 2)

typedef enum {
    WIFI_MODE_NULL = 0,
    WIFI_MODE_STA,
    WIFI_MODE_AP,
    WIFI_MODE_APSTA,
} wifi_mode_t;

typedef enum {
    WIFI_SECOND_CHAN_NONE = 0,
    WIFI_SECOND_CHAN_ABOVE,
    WIFI_SECOND_CHAN_BELOW,
} wifi_second_chan_t;

typedef void (*wifi_promiscuous_cb_t)(void *buf, wifi_promiscuous_pkt_type_t type);

esp_err_t esp_wifi_get_mode(wifi_mode_t *mode);
esp_err_t esp_wifi_set_promiscuous(bool en);
esp_err_t esp_wifi_set_promiscuous_rx_cb(wifi_promiscuous_cb_t cb);
esp_err_t esp_wifi_set_promiscuous_filter(const wifi_promiscuous_filter_t *filter);
esp_err_t esp_wifi_set_channel(uint8_t primary, wifi_second_chan_t second);
#endif
