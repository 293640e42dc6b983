# citynode crowd counting (crowd_count role): anonymous counts of distinct WiFi and BLE devices per window.
#
#   frame source (wifisniff C module on ESP32, replay.ReplaySource on the unix port, synthetic for demos)
#     -> probe.ProbeCounter: 802.11 probe requests -> transmitter address + RSSI
#   bluetooth.BLE().gap_scan results
#     -> ble.BLECounter: advertiser address + RSSI
#   both -> anonymiser.Anonymiser: RSSI floor, keyed hash (HMAC-SHA256, key rotated every window),
#           bounded set -> at window end ONLY the counts {"wifi_devices", "ble_devices"}.
#   counter.CrowdCounter ties them together for the role.
#
# Privacy invariant: no MAC address leaves RAM, is logged or persisted. Raw addresses exist only in the
# frame buffer (wiped after every drain) and in the anonymiser's 6-byte scratch (wiped after hashing).
#
# Frame record format (shared by the wifisniff C module, the replay file and the synthetic source):
#   offset size  field
#   0      2     N: number of captured frame bytes that follow (uint16 little-endian, 0..RECORD_MAX_FRAME)
#   2      1     RSSI in dBm (int8, from the capture's radio header)
#   3      1     channel (1..14; 0 = unknown)
#   4      N     the 802.11 frame from the Frame Control field on, possibly truncated to N bytes (no FCS)
# A frame source's read(buf) fills `buf` with whole records only and returns the number of bytes used.
from citynode.compat import const

RECORD_HEADER = const(4)
RECORD_MAX_FRAME = const(256)
