# The node application: one firmware for every role.
#
# A cycle: wake -> measure -> encode -> send -> apply any downlink -> sleep until the next slot.
# On an ESP32 in deep sleep every wake is a fresh boot, so all state that must outlive a cycle is in
# flash (config.json, backlog.json, state.json) or in the LoRaWAN session store. Nodes that must stay
# awake (passenger counters watch beams, crowd counters sniff) use light sleep and loop in-process.
#
# Nothing here touches hardware directly: the HAL, the role (sensors), the link (LoRaWAN) and the
# battery reader come in through the constructor.
import gc

from citynode import codec, files
from citynode.backlog import Backlog
from citynode.compat import const

STATE_PATH = "state.json"
_STATUS_FPORT = const(1)
_DOWNLINK_FPORT = const(2)
_FUOTA_PORTS = (200, 201, 202)  # TS005 multicast setup, TS004 fragmentation, TS003 clock (citynode.fuota)
_SLOTS_PATH = "slots.json"  # citynode.fuota.slots: which app version runs, the last update's outcome
_FUOTA_STATE_PATH = "fuota.json"  # citynode.fuota.store.STATE_PATH: an update session across a reset
_WDT_TIMEOUT_MS = const(120000)  # a cycle that hangs (sensor, radio) resets the node
_MIN_SLEEP_S = const(5)
_LOW_BATTERY_V = 3.3

# citynode's one version: the gateway and pyproject.toml read it from this line (tests/test_version.py).
FIRMWARE_VERSION = "0.1.0"


class Node:
    """One node: `cycle()` runs one wake; `run(cycles)` loops with the role's kind of sleep."""

    def __init__(self, config, hal, role, link, battery=None, now=None, clock=None, out=print, pace=None):
        self.config = config
        self.hal = hal
        self.clock = clock or hal
        self.role = role
        self.link = link
        self.battery = battery
        self.out = out
        if now is None:
            import time

            now = time.time
        self.now = now
        self.backlog = Backlog(config["queue_max"])
        self.state = files.read(STATE_PATH, None) or {"last_status": None, "boots": 0}
        self.wdt = hal.wdt(_WDT_TIMEOUT_MS)
        self.reset_cause = hal.reset_cause()
        self.reboot_requested = False
        self.collected = 0
        self.pace = pace  # virtual board only: virtual seconds per real second between cycles (demos)
        self.fuota = None  # citynode.fuota.node.FuotaNode, made on the first FUOTA downlink
        self.started = now()
        role.configure(config)

    # ---- boot ---------------------------------------------------------------------------------

    def boot(self):
        """Once per power-up or reset (not per deep-sleep wake): start delay, join, status uplink."""
        self.state["boots"] = self.state.get("boots", 0) + 1
        if self.reset_cause != "deep_sleep":
            delay = self._start_delay_s()
            if delay:
                self.out("start delay %d s" % delay)
                self._sleep_light(delay)
            self.state["last_status"] = None  # report the reset
        files.write(STATE_PATH, self.state)
        if self.config.get("gen_app_key"):
            fuota = files.read(_FUOTA_STATE_PATH, None)
            if fuota and (fuota.get("frag") or fuota.get("mc_c")):
                self._fuota()  # an update session was under way before the reset: FuotaNode resumes it
            fuota = None
        if self._status_due() and self._ensure_joined():
            self._send_status()

    def _start_delay_s(self):
        # A fleet powered on together must not transmit together: wait 0..start_delay_max seconds.
        limit = self.config["start_delay_max"]
        if not limit:
            return 0
        import os

        return int.from_bytes(os.urandom(2), "big") % (limit + 1)

    # ---- one cycle ----------------------------------------------------------------------------

    def cycle(self):
        """Measure, send what fits, apply a downlink; returns the seconds to sleep."""
        started = self.now()
        self.wdt.feed()
        # Collect once per cycle, before the measurement: the cycle's buffers, readings and payload
        # are then allocated in a compacted heap (fewer holes, a lower peak), and a light sleeper's
        # idle garbage (GPS sentences, probe frames) never piles up to a full heap mid-transmission.
        garbage = gc.mem_alloc()
        gc.collect()
        self.collected = garbage - gc.mem_alloc()  # for the heap report: garbage freed here
        reading = self._measure()
        self.wdt.feed()
        self.backlog.push(int(self.now()), reading)
        if not self._ensure_joined():
            return self._sleep_after(started)
        if self._status_due():
            self._send_status()
        urgent = self.role.urgent(reading)
        self._send_backlog(confirmed=self.config["confirmed"] or urgent)
        self.wdt.feed()
        if self.fuota is not None:
            self.fuota.send_answers(self._send)
            self._fuota_done()
        return self._sleep_after(started)

    def _measure(self):
        try:
            reading = self.role.measure()
        except Exception as exc:  # a role must never take the node down: send what we have
            self.out("measure failed: %s" % (exc,))
            reading = {}
        if self.battery is not None and "battery" not in reading:
            try:
                reading["battery"] = round(self.battery(), 2)
            except Exception:
                pass
        return reading

    def _ensure_joined(self):
        if self.link.joined:
            return True
        try:
            ok = self.link.join()
        except OSError as exc:
            self.out("join failed: %s" % (exc,))
            return False
        self.out("joined" if ok else "join failed")
        if ok and self.config.get("gen_app_key") and self._fuota() is not None:
            self.fuota.ask_time()  # TS003: a node provisioned for FUOTA synchronises its GPS clock
        return ok

    def _send(self, fport, payload, confirmed=False):
        try:
            downlink = self.link.send(fport, payload, confirmed)
        except OSError as exc:
            self.out("uplink failed fport=%d: %s" % (fport, exc))
            return False
        self.out("uplink fport=%d len=%d hex=%s" % (fport, len(payload), _hex(payload)))
        if downlink is not None:
            self._apply_downlink(downlink[0], downlink[1])
        return True

    def _send_backlog(self, confirmed=False):
        readings = self.backlog.newest_first()
        if not readings:
            return
        msg_type = self.role.msg_type
        try:
            if len(readings) == 1:
                payload, count = codec.encode(msg_type, _without_offset(readings[0]), self.link.max_payload()), 1
            else:
                payload, count = codec.encode_batch(msg_type, readings, self.link.max_payload())
        except codec.EncodeError as exc:
            # A reading the contract cannot carry is a bug in a driver: report and drop it, so one
            # bad value cannot block the queue for ever.
            self.out("encode failed, reading dropped: %s" % (exc,))
            self.backlog.sent(1)
            return
        if self._send(codec.fport(msg_type), payload, confirmed):
            self.backlog.sent(count)

    # ---- device status ------------------------------------------------------------------------

    def _status_due(self):
        last = self.state.get("last_status")
        return last is None or self.now() - last >= self.config["status_interval"] * 3600

    def device_faults(self, battery):
        faults = list(self.role.faults())
        if self.backlog.overflowed:
            faults.append("queue_overflow")
        if battery is not None and battery < _LOW_BATTERY_V:
            faults.append("low_battery")
        if self.reset_cause == "watchdog":
            faults.append("watchdog")
        elif self.reset_cause == "brownout":
            faults.append("brownout")
        return faults

    def _send_status(self):
        battery = None
        if self.battery is not None:
            try:
                battery = round(self.battery(), 2)
            except Exception:
                pass
        slots = files.read(_SLOTS_PATH, None) or {}
        firmware = FIRMWARE_VERSION
        if slots.get("active"):
            firmware = slots.get("versions", {}).get(slots["active"], firmware)
        status = {
            "firmware": firmware,
            "uptime": int(self.now() - self.started),
            "reset_cause": self.reset_cause if self.reset_cause in _RESET_CAUSES else "power_on",
            "faults": self.device_faults(battery),
        }
        if battery is not None:
            status["battery"] = battery
        if slots.get("update"):
            status["update"] = slots["update"]
        if self._send(_STATUS_FPORT, codec.encode("device_status", status)):
            self.state["last_status"] = self.now()
            self.backlog.clear_overflow()
            files.write(STATE_PATH, self.state)

    # ---- downlinks ----------------------------------------------------------------------------

    def _fuota(self):
        """The FUOTA side of the node (imported on first use), or None when the link has no software MAC."""
        if self.fuota is None:
            mac = getattr(self.link, "mac", None)
            if mac is None or not hasattr(mac, "listen"):
                return None
            import citynode
            from citynode.fuota.node import FuotaNode

            tree = None
            path = getattr(citynode, "__file__", "")
            cut = path.rfind("/citynode/")
            if cut > 0 and not path.startswith(".frozen"):
                tree = path[:cut]  # the flashed app's directory (lib/ on a node without a frozen app)
            running = FIRMWARE_VERSION
            slots = files.read(_SLOTS_PATH, None) or {}
            if slots.get("active"):
                running = slots.get("versions", {}).get(slots["active"], running)
            self.fuota = FuotaNode(self.config, mac, self.now, running, tree, out=self.out)
        return self.fuota

    def _fuota_done(self):
        if self.fuota.handed_over and not self.fuota.answers:  # queued answers go up before the reboot
            self.reboot_requested = True  # into the boot step that checks and installs the block (citynode.fuota.install)
        elif self.fuota.refused is not None:
            self.state["last_status"] = None  # report the refusal in the next status uplink

    def _apply_downlink(self, fport, data):
        if fport in _FUOTA_PORTS:
            if self._fuota() is None:
                self.out("downlink on fport %d ignored: FUOTA needs the software MAC" % fport)
            else:
                self.fuota.downlink(fport, data)
            return
        if fport != _DOWNLINK_FPORT:
            self.out("downlink on fport %d ignored" % fport)
            return
        from citynode import config as _config  # imported again: boot dropped it to save RAM

        try:
            settings = codec.decode_downlink(fport, data)
            changed = _config.apply_settings(self.config, settings)
        except (codec.DecodeError, _config.ConfigError) as exc:
            self.out("downlink rejected: %s" % (exc,))  # the node keeps its configuration
            return
        self.role.configure(self.config)
        if settings.get("occupancy_reset"):
            self.role.action("occupancy_reset")
        if settings.get("reboot"):
            self.reboot_requested = True
        self.out("downlink applied: %s" % (" ".join(sorted(settings)),))
        if changed:
            self.out("config saved: %s" % (" ".join(changed),))

    # ---- sleeping -----------------------------------------------------------------------------

    def _sleep_after(self, started):
        elapsed = self.now() - started
        return max(_MIN_SLEEP_S, int(self.config["interval"] - elapsed))

    def _sleep_light(self, seconds):
        self.clock.sleep_ms(seconds * 1000)

    def sleep(self, seconds):
        """Sleep until the next slot: deep sleep (a reset on wake) or light sleep (RAM kept). While an
        update is under way (citynode.fuota) the node stays awake: Class C windows, answers, install."""
        if self.fuota is not None and self.fuota.busy():
            mac = self.fuota.mac
            t0 = mac.now_ms()
            self.fuota.wait(seconds * 1000, self._send, self.wdt.feed)
            self._fuota_done()
            seconds = max(1, seconds - (mac.now_ms() - t0) // 1000)
        if self.reboot_requested:
            self.out("rebooting")
            self.hal.reset()  # does not return on a board; the sim HAL ends the run
        if self.pace:
            import time

            time.sleep(seconds / self.pace)
        if self.role.sleep == "deep":
            self.out("sleep deep %d s" % seconds)
            self.hal.deep_sleep(seconds * 1000)
        else:
            # Light sleep: the role keeps counting, and the watchdog (which keeps running in light
            # sleep on an ESP32) is fed at half its timeout.
            remaining = seconds * 1000
            while remaining > 0:
                step = remaining if remaining < _WDT_TIMEOUT_MS // 2 else _WDT_TIMEOUT_MS // 2
                self.role.idle(step)
                self.wdt.feed()
                remaining -= step

    def run(self, cycles=None, heap_report=False):
        """Boot, then run `cycles` cycles (for ever when None), sleeping between them.

        Counting roles (light sleep) count for a whole interval before their first reading.
        """
        self.boot()
        done = 0
        seconds = self.config["interval"] if self.role.sleep == "light" else 0
        if heap_report:
            gc.collect()
        while cycles is None or done < cycles:
            if heap_report:
                before = gc.mem_alloc()
            if seconds:
                self.sleep(seconds)
            seconds = self.cycle()
            done += 1
            if heap_report:
                # garbage = bytes allocated during the cycle (sleep + wake), measured before the
                # collection; an automatic collection inside the cycle makes it a lower bound.
                garbage = gc.mem_alloc() - before + self.collected
                gc.collect()
                self.out("heap cycle=%d alloc=%d free=%d garbage=%d" % (done, gc.mem_alloc(), gc.mem_free(), garbage))


_RESET_CAUSES = ("power_on", "watchdog", "deep_sleep", "soft", "brownout", "panic")


def _without_offset(reading):
    reading = dict(reading)
    reading.pop("offset_s", None)
    return reading


def _hex(data):
    import binascii

    return binascii.hexlify(data).decode()
