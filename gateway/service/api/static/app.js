// citynode gateway status page. Plain ES2020, no dependencies, no build step.
//
// One request per refresh, whatever the fleet size: /api/overview answers the totals, one page of
// devices (server-side search, filters, sort and paging) with the sparkline history of those devices
// only, the filter choices and the newest dead letters. A failed refresh says which request failed and
// how, and the next try backs off (5 s doubling to 5 min) instead of hammering a struggling gateway.
// Safety: every piece of data becomes a Text node (append(string) / textContent) or an attribute
// value set with setAttribute on a fixed attribute name; nothing from the API is ever parsed as HTML.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const MAX_BACKOFF_MS = 300000;
  const POINTS = 30; // values per sparkline
  const PAGE = 25; // devices per page
  const DEAD_LETTERS = 5; // newest shown
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
  // The node's own state (device_status message): shown under its name, apart from sensor readings.
  const STATUS_FIELDS = ["firmware", "uptime", "reset_cause", "faults"];

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let paused = false;
  let timer = null;
  let failures = 0; // consecutive failed refreshes: the back-off
  let first = true;
  let generation = 0; // a newer request makes an older answer stale
  const view = { q: "", role: "", tag: "", flags: new Set(), sort: "name", order: "asc", offset: 0 };

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
  class RequestFailed extends Error {}

  function overviewPath() {
    const p = new URLSearchParams({ limit: PAGE, points: POINTS, deadletters: DEAD_LETTERS,
      offset: view.offset, sort: view.sort, order: view.order });
    if (view.q) p.set("q", view.q);
    if (view.role) p.set("role", view.role);
    if (view.tag) p.set("tag", view.tag);
    if (view.flags.size) p.set("flag", [...view.flags].join(","));
    return `/api/overview?${p}`;
  }

  // Errors name the request and what went wrong with it: no answer at all, or the HTTP status and the
  // gateway's own error text.
  async function getJSON(path) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const name = path.split("?")[0];
    let response;
    try {
      response = await fetch(path, { headers, cache: "no-store" });
    } catch (err) {
      throw new RequestFailed(`the gateway did not answer ${name} (${err.message})`);
    }
    if (response.status === 401) throw new Unauthorised("the API needs a token");
    if (!response.ok) {
      let detail = "";
      try { detail = (await response.json()).error || ""; } catch (_) { /* not JSON */ }
      throw new RequestFailed(`${name} answered HTTP ${response.status}${detail ? ": " + detail : ""}`);
    }
    try {
      return await response.json();
    } catch (err) {
      throw new RequestFailed(`${name} sent a reply that is not JSON`);
    }
  }

  // ---------------------------------------------------------------------------------------- rendering

  function totals(t) {
    const items = [
      ["Devices", t.devices],
      ["Uplinks", t.uplinks],
      ["Uplinks in the last minute", t.uplinks_last_minute],
      ["Readings", t.readings],
      ["FCnt gaps (lost uplinks)", t.fcnt_gaps],
      ["Dead letters", t.dead_letters],
      ["Silent devices", t.silent_devices],
      ["Low battery", t.low_battery_devices],
    ];
    document.getElementById("totals").replaceChildren(
      ...items.map(([term, value]) =>
        h("div", { class: /^(Dead|Silent|Low)/.test(term) && value > 0 ? "total alert" : "total" },
          h("dt", {}, term), h("dd", {}, fmtNumber(value ?? 0)))),
    );
  }

  function readingCell(history, label) {
    const byName = new Map(history.fields.map((f) => [f.field, f]));
    const list = h("ul", { class: "readings", "aria-label": `Latest readings of ${label}` });
    for (const series of history.fields) {
      if (NOT_LISTED.test(series.field) || !series.points.length) continue;
      if (series.message_type === "device_status" && STATUS_FIELDS.includes(series.field)) continue;
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

  // Firmware, uptime, reset cause, faults: the node's own state, from its newest device_status uplink.
  function statusLine(history) {
    const parts = [];
    for (const name of STATUS_FIELDS) {
      const series = history.fields.find((f) => f.field === name && f.message_type === "device_status");
      if (!series || !series.points.length) continue;
      const v = series.points[series.points.length - 1][1];
      if (name === "faults" && !v) continue;
      parts.push(`${LABELS[name]}: ${withUnit(v, series.unit, name)}`);
    }
    return parts.length ? h("span", { class: "status", "data-status": "device" }, parts.join(" · ")) : null;
  }

  function batteryCell(device, history) {
    const cell = h("div", { class: "stack" });
    const series = history.fields.find((f) => f.field === "battery");
    const volts = device.battery ?? (series && series.points.length ? series.points[series.points.length - 1][1] : null);
    cell.append(h("span", { class: device.flags.low_battery ? "value warn" : "value" },
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
    if (device.dead_letter_count) {
      cell.append(h("span", { class: "meta warn" }, `${fmtNumber(device.dead_letter_count)} dead letter(s)`));
    }
    return cell;
  }

  function roleBadge(role) {
    return h("span", { class: "role", title: role || null }, ROLES[role] || role || "–");
  }

  // "Silent" counts from the device's configured interval (its tags), decided by the gateway.
  function lastSeen(device) {
    if (!device.last_seen) return "never";
    const cell = h("div", { class: "stack" },
      h("time", { datetime: device.last_seen, title: device.last_seen }, ago(device.last_seen)));
    if (device.flags.silent) {
      cell.append(h("span", { class: "meta warn" }, `silent (usually every ${duration(device.interval_s)})`));
    } else if (device.interval_s) {
      cell.append(h("span", { class: "meta" }, `every ${duration(device.interval_s)}`));
    }
    return cell;
  }

  function deadLetters(list) {
    const rows = list.map((d) => h("tr", {},
      h("td", { "data-label": "Received" }, h("time", { datetime: d.received_at, title: d.received_at }, ago(d.received_at))),
      h("td", { "data-label": "Source" }, d.source),
      h("td", { "data-label": "Device" }, d.dev_eui ? h("code", {}, d.dev_eui) : "–"),
      h("td", { class: "reason", "data-label": "Reason" }, d.reason)));
    document.getElementById("dead-rows").replaceChildren(...rows);
    document.getElementById("dead").hidden = rows.length === 0;
  }

  function deviceRow(device) {
    const history = device.history;
    const label = device.name || device.dev_eui;
    const tags = Object.entries(device.tags || {});
    const td = (name, ...content) => h("td", { role: "cell", "data-label": name }, ...content);
    return h("tr", { role: "row", "data-dev-eui": device.dev_eui },
      h("th", { scope: "row", role: "rowheader", "data-label": "Device" },
        h("span", { class: "device-name" }, label),
        h("code", { class: "eui" }, device.dev_eui),
        tags.length ? h("span", { class: "tags" }, tags.map(([k, v]) => `${k}: ${v}`).join(", ")) : null,
        device.firmware ? h("span", { class: "version" }, `app ${device.firmware}`) : null,
        statusLine(history)),
      td("Role", roleBadge(history.role || device.role)),
      td("Last seen", lastSeen(device)),
      td("Battery", batteryCell(device, history)),
      td("Link: RSSI / SNR", linkCell(device, history)),
      td("FCnt gaps", gapsCell(device)),
      h("td", { role: "cell", "data-label": "Latest readings", class: "col-readings" }, readingCell(history, label)));
  }

  function options(select, values, labelOf) {
    const current = select.value;
    const keep = select.options[0];
    select.replaceChildren(keep, ...values.map((v) => h("option", { value: v }, labelOf(v))));
    select.value = values.includes(current) || current === "" ? current : "";
  }

  function paging(body) {
    const from = body.matched ? body.offset + 1 : 0;
    const to = body.offset + body.devices.length;
    document.getElementById("page-info").textContent =
      `${fmtNumber(from)}–${fmtNumber(to)} of ${fmtNumber(body.matched)} device(s)` +
      (body.matched === body.totals.devices ? "" : ` (${fmtNumber(body.totals.devices)} in all)`);
    document.getElementById("prev").disabled = body.offset === 0;
    document.getElementById("next").disabled = to >= body.matched;
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function draw(body) {
    totals(body.totals);
    deadLetters(body.dead_letters);
    options(document.getElementById("role"), body.roles, (r) => ROLES[r] || r);
    options(document.getElementById("district"), body.districts.map((d) => `district:${d}`), (d) => d.slice(9));
    const rows = body.devices.map(deviceRow);
    document.getElementById("device-rows").replaceChildren(...rows);
    document.getElementById("empty").hidden = rows.length > 0;
    document.getElementById("empty").textContent = body.totals.devices
      ? "No device matches the search and filters." : "No device has sent an uplink yet.";
    paging(body);
  }

  async function refresh() {
    const mine = ++generation;
    try {
      const body = await getJSON(overviewPath());
      if (mine !== generation) return true; // a newer request (the operator typed) answers instead
      draw(body);
      document.getElementById("updated").textContent =
        `Updated ${new Date().toLocaleTimeString("en-GB")}, every ${REFRESH_MS / 1000} s`;
      failures = 0;
      showError("");
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
      document.body.dataset.state = "ready";
      if (first) {
        first = false;
        performance.mark("citynode-first-page"); // the browser test reads how long the first page took
      }
      return true;
    } catch (err) {
      if (mine !== generation) return true;
      if (err instanceof Unauthorised) {
        // Said once, by the form itself; no refresh until a token is entered.
        const form = document.getElementById("token-form");
        document.getElementById("token-note").textContent = token
          ? "The gateway did not accept that token. Enter the gateway's http.api_token:"
          : "This gateway's API needs a token (http.api_token):";
        form.hidden = false;
        showError("");
        document.getElementById("updated").textContent = "Waiting for the API token";
        document.body.dataset.state = "token";
        return false;
      }
      failures += 1;
      const wait = nextDelay();
      showError(`Could not update: ${err.message}. ` +
        `Showing what was last read; next try in ${duration(wait / 1000)}` +
        (failures > 1 ? ` (${failures} failures in a row).` : "."));
      if (first) document.getElementById("updated").textContent = "Not loaded yet";
      document.body.dataset.state = "error";
      return true;
    }
  }

  function nextDelay() {
    return failures ? Math.min(MAX_BACKOFF_MS, REFRESH_MS * 2 ** (failures - 1)) : REFRESH_MS;
  }

  function schedule() {
    clearTimeout(timer);
    if (!paused) timer = setTimeout(async () => { if (await refresh()) schedule(); }, nextDelay());
  }

  function refreshNow() {
    refresh().then((again) => { if (again) schedule(); });
  }

  // ---------------------------------------------------------------------------------------- controls

  let typing = null;
  document.getElementById("search").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => { view.q = event.target.value.trim(); view.offset = 0; refreshNow(); }, 300);
  });
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    view.q = document.getElementById("search").value.trim();
    view.offset = 0;
    refreshNow();
  });
  document.getElementById("role").addEventListener("change", (e) => { view.role = e.target.value; view.offset = 0; refreshNow(); });
  document.getElementById("district").addEventListener("change", (e) => { view.tag = e.target.value; view.offset = 0; refreshNow(); });
  document.getElementById("sort").addEventListener("change", (e) => {
    const [sort, order] = e.target.value.split(":");
    view.sort = sort; view.order = order; view.offset = 0; refreshNow();
  });
  for (const box of document.querySelectorAll("input[name=flag]")) {
    box.addEventListener("change", (e) => {
      if (e.target.checked) view.flags.add(e.target.value); else view.flags.delete(e.target.value);
      view.offset = 0;
      refreshNow();
    });
  }
  document.getElementById("prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE); refreshNow(); });
  document.getElementById("next").addEventListener("click", () => { view.offset += PAGE; refreshNow(); });

  document.getElementById("pause").addEventListener("click", (event) => {
    paused = !paused;
    event.currentTarget.setAttribute("aria-pressed", String(paused));
    event.currentTarget.textContent = paused ? "Resume updates" : "Pause updates";
    if (paused) clearTimeout(timer); else refreshNow();
  });

  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = document.getElementById("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    event.currentTarget.hidden = true;
    document.getElementById("updated").textContent = "Loading…";
    refreshNow();
  });

  // Typing in the search box from the address bar: /#q=bin-17
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("q");
  if (fromHash) { view.q = fromHash; document.getElementById("search").value = fromHash; }

  refreshNow();
})();
