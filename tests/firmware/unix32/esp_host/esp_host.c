// esp_host: the ESP-IDF Wi-Fi calls wifisniff.c makes, implemented on the unix port, plus a MicroPython
// module that plays the Wi-Fi driver so tests can hand 802.11 frames to the compiled wifisniff module.
//
// Python API (module `esp_host`, only in the unix builds of `make firmware-unix`):
//   esp_host.wifi(on)                 Wi-Fi started (esp_wifi_get_mode() succeeds) or not
//   esp_host.rx(frame, rssi, channel, kind=0, sig_len=-1) -> bool
//                                     deliver one received frame to the promiscuous callback, as the
//                                     driver task would; kind is wifi_promiscuous_pkt_type_t (0 MGMT,
//                                     1 CTRL, 2 DATA, 3 MISC); sig_len defaults to len(frame) + 4 (the
//                                     FCS the ESP32 counts). False when promiscuous mode is off.
//   esp_host.state() -> (promiscuous, channel, filter_mask, callback set)
// The shim does not apply the promiscuous filter itself, so that wifisniff's own checks are exercised.
#include <stdlib.h>
#include <string.h>

#include "py/runtime.h"
#include "py/obj.h"

#include "esp_err.h"
#include "esp_wifi.h"

static bool esp_host_wifi_on;
static bool esp_host_promiscuous;
static uint8_t esp_host_channel;
static uint32_t esp_host_filter;
static wifi_promiscuous_cb_t esp_host_cb;

const char *esp_err_to_name(esp_err_t code) {
    return code == ESP_OK ? "ESP_OK" : code == ESP_ERR_WIFI_NOT_INIT ? "ESP_ERR_WIFI_NOT_INIT" : "ESP_FAIL";
}

esp_err_t esp_wifi_get_mode(wifi_mode_t *mode) {
    if (!esp_host_wifi_on) {
        return ESP_ERR_WIFI_NOT_INIT;
    }
    *mode = WIFI_MODE_STA;
    return ESP_OK;
}

esp_err_t esp_wifi_set_promiscuous(bool en) {
    if (!esp_host_wifi_on) {
        return ESP_ERR_WIFI_NOT_INIT;
    }
    esp_host_promiscuous = en;
    return ESP_OK;
}

esp_err_t esp_wifi_set_promiscuous_rx_cb(wifi_promiscuous_cb_t cb) {
    esp_host_cb = cb;
    return ESP_OK;
}

esp_err_t esp_wifi_set_promiscuous_filter(const wifi_promiscuous_filter_t *filter) {
    esp_host_filter = filter->filter_mask;
    return ESP_OK;
}

esp_err_t esp_wifi_set_channel(uint8_t primary, wifi_second_chan_t second) {
    (void)second;
    if (!esp_host_wifi_on) {
        return ESP_ERR_WIFI_NOT_INIT;
    }
    esp_host_channel = primary;
    return ESP_OK;
}

static mp_obj_t esp_host_wifi(mp_obj_t on_in) {
    esp_host_wifi_on = mp_obj_is_true(on_in);
    if (!esp_host_wifi_on) {
        esp_host_promiscuous = false;
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(esp_host_wifi_obj, esp_host_wifi);

static mp_obj_t esp_host_rx(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t frame;
    mp_get_buffer_raise(args[0], &frame, MP_BUFFER_READ);
    mp_int_t kind = n_args > 3 ? mp_obj_get_int(args[3]) : WIFI_PKT_MGMT;
    mp_int_t sig_len = n_args > 4 ? mp_obj_get_int(args[4]) : -1;
    if (sig_len < 0) {
        sig_len = (mp_int_t)frame.len + 4;
    }
    if (kind < WIFI_PKT_MGMT || kind > WIFI_PKT_MISC || sig_len > 4095) {
        mp_raise_ValueError(MP_ERROR_TEXT("kind 0..3, sig_len < 4096"));
    }
    if (!esp_host_promiscuous || esp_host_cb == NULL) {
        return mp_const_false;
    }
    // A fresh buffer per frame, as the driver hands out: the callback must copy what it keeps.
    wifi_promiscuous_pkt_t *pkt = calloc(1, sizeof(wifi_promiscuous_pkt_t) + frame.len + 4);
    if (pkt == NULL) {
        mp_raise_type(&mp_type_MemoryError);
    }
    pkt->rx_ctrl.rssi = (int8_t)mp_obj_get_int(args[1]);
    pkt->rx_ctrl.channel = (unsigned)mp_obj_get_int(args[2]) & 0x0f;
    pkt->rx_ctrl.sig_len = (unsigned)sig_len;
    memcpy(pkt->payload, frame.buf, frame.len);
    esp_host_cb(pkt, (wifi_promiscuous_pkt_type_t)kind);
    memset(pkt, 0, sizeof(wifi_promiscuous_pkt_t) + frame.len + 4);
    free(pkt);
    return mp_const_true;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(esp_host_rx_obj, 3, 5, esp_host_rx);

static mp_obj_t esp_host_state(void) {
    mp_obj_t items[4] = {
        mp_obj_new_bool(esp_host_promiscuous),
        MP_OBJ_NEW_SMALL_INT(esp_host_channel),
        mp_obj_new_int_from_uint(esp_host_filter),
        mp_obj_new_bool(esp_host_cb != NULL),
    };
    return mp_obj_new_tuple(4, items);
}
static MP_DEFINE_CONST_FUN_OBJ_0(esp_host_state_obj, esp_host_state);

static const mp_rom_map_elem_t esp_host_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_esp_host) },
    { MP_ROM_QSTR(MP_QSTR_wifi), MP_ROM_PTR(&esp_host_wifi_obj) },
    { MP_ROM_QSTR(MP_QSTR_rx), MP_ROM_PTR(&esp_host_rx_obj) },
    { MP_ROM_QSTR(MP_QSTR_state), MP_ROM_PTR(&esp_host_state_obj) },
};
static MP_DEFINE_CONST_DICT(esp_host_module_globals, esp_host_module_globals_table);

const mp_obj_module_t esp_host_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&esp_host_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_esp_host, esp_host_user_cmodule);
