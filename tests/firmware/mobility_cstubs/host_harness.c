// Host test driver for firmware/cmodules/wifisniff/wifisniff.c: implements the stubbed MicroPython and
// ESP-IDF functions and runs commands from stdin, one per line:
//   mode ok|fail                  esp_wifi_get_mode() succeeds (Wi-Fi started) or fails
//   start <ch> | channel <ch> | stop | dropped | state
//   pkt <type> <rssi> <channel> <hex>   deliver a frame (sig_len = bytes + 4 FCS) to the rx callback
//   read <bufsize>                prints "read <n> <hex>"
// Errors raised by the module print "error <message>". Written for citynode's tests.
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "wifisniff.c"

const mp_obj_type_t mp_type_module = {"module"};
const mp_obj_type_t mp_type_OSError = {"OSError"};

static jmp_buf raise_point;
static char raise_msg[256];
static wifi_promiscuous_cb_t rx_cb;
static bool promisc;
static int cur_channel;
static uint32_t filter_mask;
static bool mode_ok = true;

typedef struct {
    uint8_t *buf;
    size_t len;
} host_buf_t;

void mp_get_buffer_raise(mp_obj_t obj, mp_buffer_info_t *bufinfo, mp_uint_t flags) {
    (void)flags;
    host_buf_t *b = (host_buf_t *)obj;
    bufinfo->buf = b->buf;
    bufinfo->len = b->len;
    bufinfo->typecode = 'B';
}
mp_obj_t mp_obj_new_int(mp_int_t value) { return (mp_obj_t)value; }
mp_obj_t mp_obj_new_int_from_uint(mp_uint_t value) { return (mp_obj_t)value; }
mp_int_t mp_obj_get_int(mp_obj_t arg) { return (mp_int_t)arg; }
void mp_raise_ValueError(const char *msg) {
    snprintf(raise_msg, sizeof raise_msg, "ValueError: %s", msg);
    longjmp(raise_point, 1);
}
void mp_raise_OSError(int errcode) {
    snprintf(raise_msg, sizeof raise_msg, "OSError: %d", errcode);
    longjmp(raise_point, 1);
}
void mp_raise_msg(const mp_obj_type_t *exc_type, const char *msg) {
    snprintf(raise_msg, sizeof raise_msg, "%s: %s", exc_type->name, msg);
    longjmp(raise_point, 1);
}
void mp_raise_msg_varg(const mp_obj_type_t *exc_type, const char *fmt, ...) {
    char tmp[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    snprintf(raise_msg, sizeof raise_msg, "%s: %s", exc_type->name, tmp);
    longjmp(raise_point, 1);
}

const char *esp_err_to_name(esp_err_t code) { return code == ESP_OK ? "ESP_OK" : "ESP_FAIL"; }
esp_err_t esp_wifi_get_mode(wifi_mode_t *mode) {
    *mode = WIFI_MODE_STA;
    return mode_ok ? ESP_OK : ESP_ERR_WIFI_NOT_INIT;
}
esp_err_t esp_wifi_set_promiscuous(bool en) { promisc = en; return ESP_OK; }
esp_err_t esp_wifi_set_promiscuous_rx_cb(wifi_promiscuous_cb_t cb) { rx_cb = cb; return ESP_OK; }
esp_err_t esp_wifi_set_promiscuous_filter(const wifi_promiscuous_filter_t *f) { filter_mask = f->filter_mask; return ESP_OK; }
esp_err_t esp_wifi_set_channel(uint8_t primary, wifi_second_chan_t second) {
    (void)second;
    cur_channel = primary;
    return ESP_OK;
}

static void call(const mp_obj_fun_builtin_fixed_t *f, mp_obj_t arg, int nargs) {
    if (setjmp(raise_point)) {
        printf("error %s\n", raise_msg);
        return;
    }
    mp_obj_t r = nargs ? f->fun._1(arg) : f->fun._0();
    printf("ok %ld\n", (long)(intptr_t)r);
}

int main(void) {
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[16] = {0}, arg[16] = {0};
        sscanf(line, "%15s %15s", cmd, arg);
        if (!strcmp(cmd, "mode")) {
            mode_ok = !strcmp(arg, "ok");
        } else if (!strcmp(cmd, "start")) {
            call(&wifisniff_start_obj, (mp_obj_t)(intptr_t)atoi(arg), 1);
        } else if (!strcmp(cmd, "channel")) {
            call(&wifisniff_channel_obj, (mp_obj_t)(intptr_t)atoi(arg), 1);
        } else if (!strcmp(cmd, "stop")) {
            call(&wifisniff_stop_obj, NULL, 0);
        } else if (!strcmp(cmd, "dropped")) {
            call(&wifisniff_dropped_obj, NULL, 0);
        } else if (!strcmp(cmd, "state")) {
            printf("state promisc=%d channel=%d filter=%u cb=%d\n", promisc, cur_channel, filter_mask, rx_cb != NULL);
        } else if (!strcmp(cmd, "pkt")) {
            int type, rssi, ch;
            char hex[4000] = {0};
            sscanf(line, "pkt %d %d %d %3999s", &type, &rssi, &ch, hex);
            size_t n = strlen(hex) / 2;
            wifi_promiscuous_pkt_t *p = calloc(1, sizeof(*p) + n + 4);
            for (size_t i = 0; i < n; i++) {
                unsigned v;
                sscanf(hex + 2 * i, "%2x", &v);
                p->payload[i] = (uint8_t)v;
            }
            p->rx_ctrl.rssi = rssi;
            p->rx_ctrl.channel = (unsigned)ch;
            p->rx_ctrl.sig_len = (unsigned)(n + 4);
            if (rx_cb) {
                rx_cb(p, (wifi_promiscuous_pkt_type_t)type);
            }
            free(p);
        } else if (!strcmp(cmd, "read")) {
            size_t len = (size_t)atoi(arg);
            host_buf_t b = {calloc(1, len + 1), len};
            if (setjmp(raise_point)) {
                printf("error %s\n", raise_msg);
            } else {
                mp_int_t got = (mp_int_t)(intptr_t)wifisniff_read_obj.fun._1((mp_obj_t)&b);
                printf("read %ld ", (long)got);
                for (mp_int_t i = 0; i < got; i++) {
                    printf("%02x", b.buf[i]);
                }
                printf("\n");
            }
            free(b.buf);
        } else if (!strcmp(cmd, "ring")) {
            // privacy check: is any byte of the ring still non-zero?
            const uint8_t *r = (const uint8_t *)wifisniff_ring.slot;
            size_t nz = 0;
            for (size_t i = 0; i < sizeof wifisniff_ring.slot; i++) {
                nz += r[i] != 0;
            }
            printf("ring nonzero=%zu\n", nz);
        }
        fflush(stdout);
    }
    return 0;
}
