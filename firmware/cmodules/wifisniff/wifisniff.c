// wifisniff: 802.11 probe-request capture for the citynode crowd_count role (ESP32, ESP-IDF >= 4.4).
//
// Python API (module `wifisniff`):
//   wifisniff.start(channel)  enable promiscuous mode on `channel` (1..14), management frames only
//   wifisniff.channel(ch)     hop to another channel while running
//   wifisniff.stop()          disable promiscuous mode and drop anything buffered
//   wifisniff.read(buf) -> n  move whole records into the writable buffer `buf`; returns bytes written
//   wifisniff.dropped() -> n  records lost because the ring was full (since start)
//
// Record format (identical to citynode/crowd/__init__.py and the CNWIFI1 replay file records):
//   uint16 LE  N = captured frame bytes that follow
//   int8       RSSI dBm (wifi_pkt_rx_ctrl_t.rssi)
//   uint8      channel  (wifi_pkt_rx_ctrl_t.channel)
//   N bytes    the 802.11 frame from Frame Control on, truncated to WIFISNIFF_CAPTURE_LEN
//
// Only the 24-byte management header is kept by default: the transmitter address is all the counter
// needs, and the frame body (SSIDs a phone is looking for) is never copied.
//
// Concurrency: the promiscuous callback runs in the Wi-Fi driver task (possibly on the other core); the
// MicroPython task reads. The ring is single-producer/single-consumer with fixed-size slots: the
// producer only writes `head`, the consumer only writes `tail`, each published with release ordering
// and read with acquire ordering, so no lock is needed and the callback never blocks.
#include <stdint.h>
#include <string.h>

#include "py/runtime.h"
#include "py/obj.h"

#include "esp_err.h"
#include "esp_wifi.h"

// IEEE 802.11-2020 9.3.3.2: FC 2 + Duration 2 + A1 6 + A2 6 + A3 6 + Seq 2 = 24-byte management header.
#ifndef WIFISNIFF_CAPTURE_LEN
#define WIFISNIFF_CAPTURE_LEN 24
#endif
// Slots in the ring; a power of two. 64 x 28 bytes = 1.75 KiB of internal RAM.
#ifndef WIFISNIFF_RING_SLOTS
#define WIFISNIFF_RING_SLOTS 64
#endif
#define WIFISNIFF_RECORD_HEADER 4
#define WIFISNIFF_SLOT_SIZE (WIFISNIFF_RECORD_HEADER + WIFISNIFF_CAPTURE_LEN)
// 802.11-2020 9.2.4.1.3: type 0 (management), subtype 4 (probe request), protocol version 0.
#define WIFISNIFF_FC0_PROBE_REQ 0x40
// ESP32 rx_ctrl.sig_len counts the 4-byte FCS, which is not captured.
#define WIFISNIFF_FCS_LEN 4

#if (WIFISNIFF_RING_SLOTS & (WIFISNIFF_RING_SLOTS - 1)) != 0
#error "WIFISNIFF_RING_SLOTS must be a power of two"
#endif
#if WIFISNIFF_CAPTURE_LEN < 24 || WIFISNIFF_CAPTURE_LEN > 256
#error "WIFISNIFF_CAPTURE_LEN must be 24..256 (the Python side accepts up to 256)"
#endif

typedef struct {
    uint8_t slot[WIFISNIFF_RING_SLOTS][WIFISNIFF_SLOT_SIZE];
    uint32_t head;     // next slot to write; written by the producer only
    uint32_t tail;     // next slot to read; written by the consumer only
    uint32_t dropped;  // written by the producer only
} wifisniff_ring_t;

static wifisniff_ring_t wifisniff_ring;
static bool wifisniff_running;

// Producer: the Wi-Fi driver task. Must not block, allocate or call into MicroPython.
static void wifisniff_rx_cb(void *buf, wifi_promiscuous_pkt_type_t type) {
    if (type != WIFI_PKT_MGMT || buf == NULL) {
        return;
    }
    const wifi_promiscuous_pkt_t *pkt = (const wifi_promiscuous_pkt_t *)buf;
    int len = (int)pkt->rx_ctrl.sig_len - WIFISNIFF_FCS_LEN;
    if (len < 24 || pkt->payload[0] != WIFISNIFF_FC0_PROBE_REQ) {
        return;  // not a probe request, or too short to carry the transmitter address
    }
    if (len > WIFISNIFF_CAPTURE_LEN) {
        len = WIFISNIFF_CAPTURE_LEN;
    }
    uint32_t head = wifisniff_ring.head;
    uint32_t tail = __atomic_load_n(&wifisniff_ring.tail, __ATOMIC_ACQUIRE);
    if (head - tail >= WIFISNIFF_RING_SLOTS) {
        __atomic_store_n(&wifisniff_ring.dropped, wifisniff_ring.dropped + 1, __ATOMIC_RELAXED);
        return;
    }
    uint8_t *s = wifisniff_ring.slot[head & (WIFISNIFF_RING_SLOTS - 1)];
    s[0] = (uint8_t)(len & 0xff);
    s[1] = (uint8_t)(len >> 8);
    s[2] = (uint8_t)(int8_t)pkt->rx_ctrl.rssi;
    s[3] = (uint8_t)pkt->rx_ctrl.channel;
    memcpy(s + WIFISNIFF_RECORD_HEADER, pkt->payload, (size_t)len);
    __atomic_store_n(&wifisniff_ring.head, head + 1, __ATOMIC_RELEASE);
}

static void wifisniff_check(esp_err_t err) {
    if (err != ESP_OK) {
        mp_raise_msg_varg(&mp_type_OSError, MP_ERROR_TEXT("wifisniff: %s"), esp_err_to_name(err));
    }
}

static mp_int_t wifisniff_get_channel(mp_obj_t channel_in) {
    mp_int_t channel = mp_obj_get_int(channel_in);
    if (channel < 1 || channel > 14) {
        mp_raise_ValueError(MP_ERROR_TEXT("channel must be 1..14"));
    }
    return channel;
}

static void wifisniff_clear(void) {
    // Only called with the callback disabled: the ring is quiescent.
    memset(&wifisniff_ring, 0, sizeof(wifisniff_ring));
}

// wifisniff.start(channel): needs Wi-Fi started (network.WLAN(network.STA_IF).active(True)).
static mp_obj_t wifisniff_start(mp_obj_t channel_in) {
    mp_int_t channel = wifisniff_get_channel(channel_in);
    wifi_mode_t mode;
    if (esp_wifi_get_mode(&mode) != ESP_OK) {
        mp_raise_msg(&mp_type_OSError,
            MP_ERROR_TEXT("wifisniff: wifi not started, call network.WLAN(network.STA_IF).active(True)"));
    }
    if (wifisniff_running) {
        wifisniff_check(esp_wifi_set_promiscuous(false));
        wifisniff_running = false;
    }
    wifisniff_clear();
    wifi_promiscuous_filter_t filter = {.filter_mask = WIFI_PROMIS_FILTER_MASK_MGMT};
    wifisniff_check(esp_wifi_set_promiscuous_filter(&filter));
    wifisniff_check(esp_wifi_set_promiscuous_rx_cb(wifisniff_rx_cb));
    wifisniff_check(esp_wifi_set_promiscuous(true));
    wifisniff_running = true;
    wifisniff_check(esp_wifi_set_channel((uint8_t)channel, WIFI_SECOND_CHAN_NONE));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(wifisniff_start_obj, wifisniff_start);

static mp_obj_t wifisniff_channel(mp_obj_t channel_in) {
    mp_int_t channel = wifisniff_get_channel(channel_in);
    wifisniff_check(esp_wifi_set_channel((uint8_t)channel, WIFI_SECOND_CHAN_NONE));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(wifisniff_channel_obj, wifisniff_channel);

static mp_obj_t wifisniff_stop(void) {
    if (wifisniff_running) {
        esp_wifi_set_promiscuous(false);
        esp_wifi_set_promiscuous_rx_cb(NULL);
        wifisniff_running = false;
    }
    wifisniff_clear();  // privacy: nothing captured survives stop()
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(wifisniff_stop_obj, wifisniff_stop);

// Consumer: copies whole records into buf, wipes each slot after copying it.
static mp_obj_t wifisniff_read(mp_obj_t buf_in) {
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(buf_in, &bufinfo, MP_BUFFER_WRITE);
    uint8_t *out = (uint8_t *)bufinfo.buf;
    size_t pos = 0;
    uint32_t tail = wifisniff_ring.tail;
    uint32_t head = __atomic_load_n(&wifisniff_ring.head, __ATOMIC_ACQUIRE);
    while (tail != head) {
        uint8_t *s = wifisniff_ring.slot[tail & (WIFISNIFF_RING_SLOTS - 1)];
        size_t n = WIFISNIFF_RECORD_HEADER + ((size_t)s[0] | ((size_t)s[1] << 8));
        if (pos + n > bufinfo.len) {
            break;
        }
        memcpy(out + pos, s, n);
        memset(s, 0, WIFISNIFF_SLOT_SIZE);
        pos += n;
        tail++;
        __atomic_store_n(&wifisniff_ring.tail, tail, __ATOMIC_RELEASE);
    }
    return mp_obj_new_int((mp_int_t)pos);
}
static MP_DEFINE_CONST_FUN_OBJ_1(wifisniff_read_obj, wifisniff_read);

static mp_obj_t wifisniff_dropped(void) {
    return mp_obj_new_int_from_uint(__atomic_load_n(&wifisniff_ring.dropped, __ATOMIC_RELAXED));
}
static MP_DEFINE_CONST_FUN_OBJ_0(wifisniff_dropped_obj, wifisniff_dropped);

static const mp_rom_map_elem_t wifisniff_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_wifisniff) },
    { MP_ROM_QSTR(MP_QSTR_start), MP_ROM_PTR(&wifisniff_start_obj) },
    { MP_ROM_QSTR(MP_QSTR_channel), MP_ROM_PTR(&wifisniff_channel_obj) },
    { MP_ROM_QSTR(MP_QSTR_stop), MP_ROM_PTR(&wifisniff_stop_obj) },
    { MP_ROM_QSTR(MP_QSTR_read), MP_ROM_PTR(&wifisniff_read_obj) },
    { MP_ROM_QSTR(MP_QSTR_dropped), MP_ROM_PTR(&wifisniff_dropped_obj) },
    { MP_ROM_QSTR(MP_QSTR_RECORD_HEADER), MP_ROM_INT(WIFISNIFF_RECORD_HEADER) },
    { MP_ROM_QSTR(MP_QSTR_CAPTURE_LEN), MP_ROM_INT(WIFISNIFF_CAPTURE_LEN) },
};
static MP_DEFINE_CONST_DICT(wifisniff_module_globals, wifisniff_module_globals_table);

const mp_obj_module_t wifisniff_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&wifisniff_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_wifisniff, wifisniff_user_cmodule);
