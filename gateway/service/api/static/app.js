// citynode gateway status page. Plain ES2020, no dependencies, no build step.
//
// Reads /api/summary, /api/devices and /api/history?device= every REFRESH_MS and redraws the table.
// Safety: every piece of data becomes a Text node (append(string) / textContent) or an attribute
// value set with setAttribute on a fixed attribute name; nothing from the API is ever parsed as HTML.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const POINTS = 60; // values per sparkline
  const DEAD_LETTERS = 5; // newest shown
  const SILENT_AFTER = 3; // a device is "silent" after this many of its usual intervals without an uplink
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "citynode-api-token";

  const ROLES = {
    air_quality: "Air quality",
    bin_fill: "Waste bin",
    passenger_count: "Passenger count",
    crowd_count: "Crowd count",
    device_status: "Status only",
  };
  const LABELS = {
    temperature: "Temperature",
    relative_humidity: "Humidity",
    pressure: "Pressure",
    gas_resistance: "Gas resistance",
    pm1_0: "PM1.0",
    pm2_5: "PM2.5",
    pm10: "PM10",
    distance: "Distance",
    fill_level: "Fill level",
    tilt: "Tipped / lid open",
    interval: "Interval",
    occupancy: "Occupancy",
    wifi_devices: "Wi-Fi devices",
    ble_devices: "BLE devices",
    battery: "Battery",
    latitude: "Latitude",
    longitude: "Longitude",
    uptime: "Uptime",
    reset_cause: "Reset cause",
    firmware: "Firmware",
    faults: "Faults",
  };
  // Shown as a value only: a line of coordinates or of a fixed interval says nothing.
  const NO_CHART = /^(latitude|longitude|interval)$/;
  // Not listed among the readings: battery has its own column, a door number names its counts.
  const NOT_LISTED = /^(battery|doors\.\d+\.door)$/;

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let paused = false;
  let timer = null;

  // ---------------------------------------------------------------------------------------- DOM helpers

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child); // strings become Text nodes
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  // ---------------------------------------------------------------------------------------- formatting

  function fmtNumber(v, unit) {
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v !== "number") return String(v);
    const abs = Math.abs(v);
    // Coordinates keep their 5 decimals (about 1 m); other values 1 or 2 significant decimals.
    const digits = Number.isInteger(v) ? 0 : unit === "°" ? 5 : abs >= 10 ? 1 : 2;
    return v.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }

  function duration(seconds) {
    const d = Math.floor(seconds / 86400);
    const hours = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = Math.floor(seconds % 60);
    if (d) return `${d} d ${hours} h`;
    if (hours) return m ? `${hours} h ${m} min` : `${hours} h`;
    if (m) return s ? `${m} min ${s} s` : `${m} min`;
    return `${s} s`;
  }

  function withUnit(v, unit, field) {
    if (field === "uptime" && typeof v === "number") return duration(v);
    const text = fmtNumber(v, unit);
    if (!unit || typeof v === "boolean") return text;
    return unit === "%" || unit === "°" ? text + unit : text + "\u202f" + unit;
  }

  function fieldLabel(field, byName) {
    if (LABELS[field]) return LABELS[field];
    const m = /^doors\.(\d+)\.(boardings|alightings)$/.exec(field);
    if (m) {
      const door = byName.get(`doors.${m[1]}.door`);
      const number = door && door.points.length ? door.points[door.points.length - 1][1] : Number(m[1]) + 1;
      return `Door ${number} ${m[2]}`;
    }
    return field.replace(/[._]/g, " ");
  }

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  // ---------------------------------------------------------------------------------------- sparkline

  // An inline SVG line of `values` (numbers; booleans as 0/1) with a dot on the newest one.
  // `description` is its text alternative (role=img + aria-label + <title> for a hover tooltip).
  function sparkline(values, description, kind) {
    const W = 120;
    const H = 30;
    const P = 3;
    const ys = values.map((v) => (typeof v === "boolean" ? (v ? 1 : 0) : v));
    const chart = svg("svg", {
      class: `spark${kind ? " spark-" + kind : ""}`,
      viewBox: `0 0 ${W} ${H}`,
      width: W,
      height: H,
      role: "img",
      "aria-label": description,
      focusable: "false",
    });
    const title = svg("title");
    title.textContent = description;
    chart.append(title);
    chart.append(svg("line", { class: "base", x1: P, x2: W - P, y1: H - P, y2: H - P }));
    if (!ys.length) return chart;
    const lo = Math.min(...ys);
    const hi = Math.max(...ys);
    const x = (i) => (ys.length === 1 ? W / 2 : P + (i * (W - 2 * P)) / (ys.length - 1));
    const y = (v) => (hi === lo ? H / 2 : H - P - ((v - lo) * (H - 2 * P)) / (hi - lo));
    const pts = ys.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { class: "line", points: pts }));
    const last = ys.length - 1;
    chart.append(svg("circle", { class: "dot", cx: x(last).toFixed(1), cy: y(ys[last]).toFixed(1), r: 2.5 }));
    return chart;
  }

  function describe(label, values, unit) {
    const nums = values.map((v) => (typeof v === "boolean" ? (v ? 1 : 0) : v));
    const n = values.length;
    const latest = withUnit(values[n - 1], unit);
    if (n === 1) return `${label}: one value, ${latest}`;
    if (typeof values[0] === "boolean") {
      const yes = nums.filter((v) => v === 1).length;
      return `${label}, last ${n} values: yes ${yes} times; latest ${latest}`;
    }
    return `${label}, last ${n} values: lowest ${withUnit(Math.min(...nums), unit)}, ` +
      `highest ${withUnit(Math.max(...nums), unit)}, latest ${latest}`;
  }

  function isNumeric(series) {
    return series.points.length > 0 &&
      series.points.every(([, v]) => typeof v === "number" || typeof v === "boolean");
  }

  // ---------------------------------------------------------------------------------------- API

  class Unauthorised extends Error {}

  async function getJSON(path) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) throw new Unauthorised("the API needs a token");
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  // ---------------------------------------------------------------------------------------- rendering

  function totals(summary) {
    const items = [
      ["Devices", summary.devices],
      ["Uplinks", summary.uplinks],
      ["Uplinks in the last minute", summary.uplinks_last_minute],
      ["Readings", summary.readings],
      ["FCnt gaps (lost uplinks)", summary.fcnt_gaps],
      ["Dead letters", summary.dead_letters],
    ];
    const dl = document.getElementById("totals");
    dl.replaceChildren(
      ...items.map(([term, value]) =>
        h("div", { class: term.startsWith("Dead") && value > 0 ? "total alert" : "total" },
          h("dt", {}, term), h("dd", {}, fmtNumber(value ?? 0)))),
    );
  }

  function readingCell(history, label) {
    const byName = new Map(history.fields.map((f) => [f.field, f]));
    const list = h("ul", { class: "readings", "aria-label": `Latest readings of ${label}` });
    for (const series of history.fields) {
      if (NOT_LISTED.test(series.field) || !series.points.length) continue;
      const name = fieldLabel(series.field, byName);
      const values = series.points.map((p) => p[1]);
      const latest = values[values.length - 1];
      const item = h("li", { class: "reading", "data-field": series.field },
        h("span", { class: "name" }, name),
        h("span", { class: "value" }, withUnit(latest, series.unit, series.field)));
      if (isNumeric(series) && !NO_CHART.test(series.field) && values.length > 1) {
        item.append(sparkline(values, describe(name, values, series.unit)));
      }
      list.append(item);
    }
    return list;
  }

  function batteryCell(device, history) {
    const cell = h("div", { class: "stack" });
    const series = history.fields.find((f) => f.field === "battery");
    const volts = device.battery ?? (series && series.points.length ? series.points[series.points.length - 1][1] : null);
    cell.append(h("span", { class: volts !== null && volts < 3.3 ? "value warn" : "value" },
      volts === null ? "–" : withUnit(volts, "V")));
    if (series && series.points.length > 1) {
      const values = series.points.map((p) => p[1]);
      cell.append(sparkline(values, describe("Battery", values, "V"), "battery"));
    }
    return cell;
  }

  function linkCell(device, history) {
    const cell = h("div", { class: "stack" });
    const rssi = device.last_rssi === null ? "–" : withUnit(device.last_rssi, "dBm");
    const snr = device.last_snr === null ? "–" : withUnit(device.last_snr, "dB");
    cell.append(h("span", { class: "value" }, `${rssi} / ${snr}`));
    const rssiValues = history.link.map((p) => p.rssi).filter((v) => typeof v === "number");
    const snrValues = history.link.map((p) => p.snr).filter((v) => typeof v === "number");
    if (rssiValues.length > 1) cell.append(sparkline(rssiValues, describe("RSSI", rssiValues, "dBm"), "rssi"));
    if (snrValues.length > 1) cell.append(sparkline(snrValues, describe("SNR", snrValues, "dB"), "snr"));
    const sf = history.link.length ? history.link[history.link.length - 1].spreading_factor : null;
    if (sf) cell.append(h("span", { class: "meta" }, `SF${sf}, ${history.link[history.link.length - 1].gateway_count} gateway(s)`));
    return cell;
  }

  function gapsCell(device) {
    const lost = device.fcnt_gaps || 0;
    const cell = h("div", { class: "stack" },
      h("span", { class: lost > 0 ? "value warn" : "value" }, lost === 1 ? "1 lost" : `${fmtNumber(lost)} lost`),
      h("span", { class: "meta" }, `of ${fmtNumber(device.uplinks + lost)} sent`));
    if (device.resets) cell.append(h("span", { class: "meta warn" }, `${device.resets} counter reset(s)`));
    return cell;
  }

  function roleBadge(role) {
    return h("span", { class: "role", title: role || null }, ROLES[role] || role || "–");
  }

  // The device's usual uplink interval in ms: the median gap between its recent uplinks.
  function usualInterval(history) {
    const times = history.link.map((p) => Date.parse(p.time));
    const gaps = times.slice(1).map((t, i) => t - times[i]).filter((g) => g > 0).sort((a, b) => a - b);
    return gaps.length ? gaps[Math.floor(gaps.length / 2)] : null;
  }

  function lastSeen(device, history) {
    if (!device.last_seen) return "never";
    const cell = h("div", { class: "stack" },
      h("time", { datetime: device.last_seen, title: device.last_seen }, ago(device.last_seen)));
    const usual = usualInterval(history);
    const age = Date.now() - Date.parse(device.last_seen);
    if (usual && age > Math.max(SILENT_AFTER * usual, 60000)) {
      cell.append(h("span", { class: "meta warn" }, `silent (usually every ${duration(usual / 1000)})`));
    }
    return cell;
  }

  function deadLetters(list) {
    const rows = list.dead_letters.map((d) => h("tr", {},
      h("td", {}, h("time", { datetime: d.received_at, title: d.received_at }, ago(d.received_at))),
      h("td", {}, d.source),
      h("td", {}, d.dev_eui ? h("code", {}, d.dev_eui) : "–"),
      h("td", { class: "reason" }, d.reason)));
    document.getElementById("dead-rows").replaceChildren(...rows);
    document.getElementById("dead").hidden = rows.length === 0;
  }

  function deviceRow(device, history) {
    const label = device.name || device.dev_eui;
    const tags = Object.entries(device.tags || {});
    const td = (name, ...content) => h("td", { role: "cell", "data-label": name }, ...content);
    return h("tr", { role: "row", "data-dev-eui": device.dev_eui },
      h("th", { scope: "row", role: "rowheader", "data-label": "Device" },
        h("span", { class: "device-name" }, label),
        h("code", { class: "eui" }, device.dev_eui),
        tags.length ? h("span", { class: "tags" }, tags.map(([k, v]) => `${k}: ${v}`).join(", ")) : null),
      td("Role", roleBadge(history.role || device.role)),
      td("Last seen", lastSeen(device, history)),
      td("Battery", batteryCell(device, history)),
      td("Link: RSSI / SNR", linkCell(device, history)),
      td("FCnt gaps", gapsCell(device)),
      h("td", { role: "cell", "data-label": "Latest readings", class: "col-readings" }, readingCell(history, label)));
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function refresh() {
    try {
      const [summary, list, dead] = await Promise.all([
        getJSON("/api/summary"), getJSON("/api/devices"), getJSON(`/api/deadletters?limit=${DEAD_LETTERS}`)]);
      const histories = await Promise.all(list.devices.map((d) =>
        getJSON(`/api/history?device=${encodeURIComponent(d.dev_eui)}&points=${POINTS}`)));
      totals(summary);
      deadLetters(dead);
      const rows = list.devices.map((d, i) => deviceRow(d, histories[i]));
      document.getElementById("device-rows").replaceChildren(...rows);
      document.getElementById("empty").hidden = rows.length > 0;
      document.getElementById("updated").textContent =
        `Updated ${new Date().toLocaleTimeString("en-GB")}, every ${REFRESH_MS / 1000} s`;
      document.body.dataset.state = "ready";
      showError("");
    } catch (err) {
      if (err instanceof Unauthorised) {
        document.getElementById("token-form").hidden = false;
        showError("The gateway's API needs a token: enter it below.");
      } else {
        showError(`Cannot read the gateway: ${err.message}. Retrying in ${REFRESH_MS / 1000} s.`);
      }
      document.body.dataset.state = "error";
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (!paused) timer = setTimeout(async () => { await refresh(); schedule(); }, REFRESH_MS);
  }

  document.getElementById("pause").addEventListener("click", (event) => {
    paused = !paused;
    event.currentTarget.setAttribute("aria-pressed", String(paused));
    event.currentTarget.textContent = paused ? "Resume updates" : "Pause updates";
    if (!paused) refresh();
    schedule();
  });

  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = document.getElementById("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    event.currentTarget.hidden = true;
    refresh();
  });

  refresh().then(schedule);
})();
