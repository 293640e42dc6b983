// ---- runtime (gateway/contract/templates/citynode_runtime.js) ----
// Plain ES5-style JavaScript: ChirpStack v4 runs codecs in QuickJS with no modules and a 100 ms limit.
// The accepted CBOR profile is the same as the gateway's and the firmware's: shortest integer heads,
// definite lengths, no tags, floats or strings, simple values false/true/null only.

function CitynodeError(message) {
  this.message = message;
}

function cnRead(r) {
  if (r.pos >= r.bytes.length) throw new CitynodeError("not valid CBOR (truncated)");
  var ib = r.bytes[r.pos++];
  var major = ib >> 5;
  var ai = ib & 31;
  if (major === 7) {
    if (ai === 20) return false;
    if (ai === 21) return true;
    if (ai === 22) return null;
    throw new CitynodeError("CBOR simple value or float is not allowed");
  }
  if (major === 2 || major === 3) throw new CitynodeError("CBOR strings are not allowed");
  if (major === 6) throw new CitynodeError("CBOR tags are not allowed");
  var n;
  if (ai < 24) {
    n = ai;
  } else if (ai <= 27) {
    var size = 1 << (ai - 24);
    if (r.pos + size > r.bytes.length) throw new CitynodeError("not valid CBOR (truncated)");
    n = 0;
    for (var i = 0; i < size; i++) n = n * 256 + r.bytes[r.pos++];
    var least = size === 1 ? 24 : Math.pow(2, 4 * size);
    if (n < least) throw new CitynodeError("CBOR integer not in shortest form");
  } else {
    throw new CitynodeError("CBOR indefinite lengths are not allowed");
  }
  if (major === 0) return n;
  if (major === 1) return -1 - n;
  if (n > r.bytes.length - r.pos) throw new CitynodeError("not valid CBOR (length exceeds payload)");
  if (major === 4) {
    var items = [];
    for (var j = 0; j < n; j++) items.push(cnRead(r));
    return items;
  }
  var keys = [];
  var values = [];
  for (var k = 0; k < n; k++) {
    var key = cnRead(r);
    for (var m = 0; m < keys.length; m++) {
      if (JSON.stringify(keys[m]) === JSON.stringify(key)) throw new CitynodeError("CBOR map has duplicate keys");
    }
    keys.push(key);
    values.push(cnRead(r));
  }
  return { cborMap: true, keys: keys, values: values };
}

function cnLoad(bytes, name) {
  if (!bytes || typeof bytes.length !== "number") throw new CitynodeError(name + ": payload must be bytes");
  if (bytes.length === 0) throw new CitynodeError(name + ": empty payload");
  if (bytes.length > 242) throw new CitynodeError(name + ": payload exceeds the LoRaWAN maximum of 242 bytes");
  for (var i = 0; i < bytes.length; i++) {
    var b = bytes[i];
    if (typeof b !== "number" || b < 0 || b > 255 || Math.floor(b) !== b) {
      throw new CitynodeError(name + ": byte " + i + " is not 0..255");
    }
  }
  var r = { bytes: bytes, pos: 0 };
  var value;
  try {
    value = cnRead(r);
  } catch (e) {
    throw new CitynodeError(name + ": " + e.message);
  }
  if (r.pos !== bytes.length) throw new CitynodeError(name + ": " + (bytes.length - r.pos) + " unexpected byte(s) after the CBOR array");
  if (!Array.isArray(value)) throw new CitynodeError(name + ": payload must be a CBOR array");
  return value;
}

function cnIsInt(v) {
  return typeof v === "number" && Math.floor(v) === v;
}

function cnMessageFor(fPort, direction) {
  if (!cnIsInt(fPort)) throw new CitynodeError("fPort must be an integer");
  var names = Object.keys(CITYNODE_SCHEMA.messages);
  for (var i = 0; i < names.length; i++) {
    var msg = CITYNODE_SCHEMA.messages[names[i]];
    if (msg.fport === fPort && msg.direction === direction) return { name: names[i], spec: msg };
  }
  throw new CitynodeError("no citynode " + direction + " message on fPort " + fPort);
}

function cnHeader(msg, items) {
  if (items.length === 0) throw new CitynodeError(msg.name + ": empty array, expected a header");
  var header = items[0];
  var known = CITYNODE_SCHEMA.versionMask | CITYNODE_SCHEMA.batchFlag;
  if (!cnIsInt(header) || header < 0 || header > 0xffffffff || (header & ~known) !== 0) {
    throw new CitynodeError(msg.name + ": invalid header " + JSON.stringify(header));
  }
  var version = header & CITYNODE_SCHEMA.versionMask;
  var fields = msg.spec.versions[String(version)];
  if (!fields) throw new CitynodeError(msg.name + ": unsupported schema version " + version);
  return { version: version, batch: (header & CITYNODE_SCHEMA.batchFlag) !== 0, fields: fields };
}

function cnValue(where, f, raw) {
  if (f.type === "bool") {
    if (raw !== true && raw !== false) throw new CitynodeError(where + ": expected true or false");
    return raw;
  }
  if (f.type === "number") {
    if (!cnIsInt(raw)) throw new CitynodeError(where + ": expected an integer");
    var units = raw + f.offset;
    var value = f.mult === 1 ? units : units / f.mult;
    if (!(value >= f.min && value <= f.max)) throw new CitynodeError(where + ": " + value + " outside " + f.min + ".." + f.max);
    return value;
  }
  if (f.type === "enum") {
    if (!cnIsInt(raw) || raw < 0 || raw >= f.values.length) throw new CitynodeError(where + ": enum index out of range");
    return f.values[raw];
  }
  if (f.type === "flags") {
    if (!cnIsInt(raw) || raw < 0 || raw >= Math.pow(2, f.values.length)) {
      throw new CitynodeError(where + ": flag mask has bits beyond the " + f.values.length + " defined");
    }
    var names = [];
    for (var bit = 0; bit < f.values.length; bit++) {
      if (Math.floor(raw / Math.pow(2, bit)) % 2 === 1) names.push(f.values[bit]);
    }
    return names;
  }
  if (f.type === "semver") {
    if (!Array.isArray(raw) || raw.length !== 3) throw new CitynodeError(where + ": expected [major, minor, patch]");
    for (var p = 0; p < 3; p++) {
      if (!cnIsInt(raw[p]) || raw[p] < 0 || raw[p] > 255) throw new CitynodeError(where + ": version parts must be 0..255");
    }
    return raw.join(".");
  }
  if (f.type === "list") {
    var width = f.items.length;
    if (!Array.isArray(raw) || raw.length % width !== 0) throw new CitynodeError(where + ": expected a flat array of " + width + "-value items");
    var count = raw.length / width;
    if (count > f.maxItems) throw new CitynodeError(where + ": " + count + " items, at most " + f.maxItems);
    var out = [];
    for (var i = 0; i < count; i++) {
      var item = {};
      for (var j = 0; j < width; j++) {
        var sub = f.items[j];
        var v = raw[i * width + j];
        if (v === null) throw new CitynodeError(where + "[" + i + "]." + sub.name + ": cannot be null");
        item[sub.name] = cnValue(where + "[" + i + "]." + sub.name, sub, v);
      }
      out.push(item);
    }
    return out;
  }
  throw new CitynodeError(where + ": unsupported field type " + f.type);
}

function cnReading(name, fields, values, reading) {
  var required = 0;
  for (var i = 0; i < fields.length; i++) if (!fields[i].optional) required++;
  if (values.length < required) throw new CitynodeError(name + ": reading has " + values.length + " values, at least " + required + " required");
  if (values.length > fields.length) throw new CitynodeError(name + ": reading has " + values.length + " values, at most " + fields.length + " defined");
  var missing = [];
  var hasFaultsField = false;
  for (var k = 0; k < values.length; k++) {
    var f = fields[k];
    if (f.type === "flags" && f.name === "faults") hasFaultsField = true;
    if (values[k] === null) {
      if (f.type === "flags") throw new CitynodeError(name + "." + f.name + ": cannot be null");
      missing.push(f.name);
      continue;
    }
    reading[f.name] = cnValue(name + "." + f.name, f, values[k]);
  }
  if (hasFaultsField) reading.faults = reading.faults.concat(missing);
  else if (missing.length > 0) reading.faults = missing;
  return reading;
}

function cnDecodeUplink(fPort, bytes) {
  var msg = cnMessageFor(fPort, "uplink");
  var items = cnLoad(bytes, msg.name);
  var h = cnHeader(msg, items);
  var readings = [];
  if (!h.batch) {
    readings.push(cnReading(msg.name, h.fields, items.slice(1), {}));
  } else {
    if (items.length < 2) throw new CitynodeError(msg.name + ": batch with no readings");
    var offset = 0;
    for (var i = 1; i < items.length; i++) {
      var where = msg.name + ": batch reading " + (i - 1);
      var entry = items[i];
      if (!Array.isArray(entry) || entry.length === 0) throw new CitynodeError(where + ": expected an array starting with the seconds since the newer reading");
      var delta = entry[0];
      if (!cnIsInt(delta) || delta < 0 || delta > 0xffffffff) throw new CitynodeError(where + ": time delta must be an unsigned integer of seconds");
      if (i === 1 && delta !== 0) throw new CitynodeError(where + ": the newest reading must have a time delta of 0");
      offset += delta;
      readings.push(cnReading(msg.name, h.fields, entry.slice(1), { offset_s: offset }));
    }
  }
  return { type: msg.name, version: h.version, readings: readings };
}

function cnDecodeDownlink(fPort, bytes) {
  var msg = cnMessageFor(fPort, "downlink");
  var items = cnLoad(bytes, msg.name);
  var h = cnHeader(msg, items);
  if (h.batch || items.length !== 2 || items[1] === null || items[1].cborMap !== true) {
    throw new CitynodeError(msg.name + ": expected [header, {setting index: value}]");
  }
  var map = items[1];
  var order = [];
  for (var i = 0; i < map.keys.length; i++) {
    var key = map.keys[i];
    if (!cnIsInt(key) || key < 0 || key >= h.fields.length) throw new CitynodeError(msg.name + ": unknown setting index " + JSON.stringify(key));
    if (i > 0 && key <= map.keys[i - 1]) throw new CitynodeError(msg.name + ": setting indexes must be rising");
    order.push(i);
  }
  var settings = {};
  for (var j = 0; j < order.length; j++) {
    var f = h.fields[map.keys[order[j]]];
    var raw = map.values[order[j]];
    if (raw === null) throw new CitynodeError(msg.name + "." + f.name + ": a setting cannot be null");
    settings[f.name] = cnValue(msg.name + "." + f.name, f, raw);
  }
  if (order.length === 0) throw new CitynodeError(msg.name + ": message has no settings");
  return settings;
}

function cnHead(out, major, n) {
  var mt = major << 5;
  if (n < 24) out.push(mt | n);
  else if (n < 256) out.push(mt | 24, n);
  else if (n < 65536) out.push(mt | 25, n >> 8, n & 255);
  else out.push(mt | 26, Math.floor(n / 16777216) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255);
}

function cnWriteInt(out, v) {
  if (v >= 0) cnHead(out, 0, v);
  else cnHead(out, 1, -1 - v);
}

function cnEncodeDownlink(data) {
  var msg = cnMessageFor(2, "downlink");
  var spec = msg.spec;
  var fields = spec.versions[String(spec.current)];
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw new CitynodeError("config: data must be an object of settings");
  var names = Object.keys(data);
  if (names.length === 0) throw new CitynodeError("config: give at least one setting");
  var pairs = [];
  for (var i = 0; i < names.length; i++) {
    var index = -1;
    for (var j = 0; j < fields.length; j++) if (fields[j].name === names[i]) index = j;
    if (index < 0) throw new CitynodeError("config: unknown setting " + JSON.stringify(names[i]));
    var f = fields[index];
    var value = data[names[i]];
    var where = "config." + f.name;
    if (f.type === "bool") {
      if (value !== true && value !== false) throw new CitynodeError(where + ": expected true or false");
      pairs.push([index, value]);
    } else {
      if (typeof value !== "number" || !isFinite(value)) throw new CitynodeError(where + ": expected a number");
      if (!(value >= f.min && value <= f.max)) throw new CitynodeError(where + ": " + value + " outside " + f.min + ".." + f.max);
      var scaled = value * f.mult;
      var units = scaled >= 0 ? Math.floor(scaled + 0.5) : -Math.floor(-scaled + 0.5);
      pairs.push([index, units - f.offset]);
    }
  }
  pairs.sort(function (a, b) { return a[0] - b[0]; });
  var out = [];
  cnHead(out, 4, 2);
  cnWriteInt(out, spec.current);
  cnHead(out, 5, pairs.length);
  for (var k = 0; k < pairs.length; k++) {
    cnWriteInt(out, pairs[k][0]);
    if (pairs[k][1] === true) out.push(0xf5);
    else if (pairs[k][1] === false) out.push(0xf4);
    else cnWriteInt(out, pairs[k][1]);
  }
  if (out.length > 51) throw new CitynodeError("config: payload of " + out.length + " bytes exceeds the DR0 limit of 51");
  return { fPort: spec.fport, bytes: out };
}

function cnErrorText(e) {
  if (e instanceof CitynodeError) return e.message;
  return "internal codec error: " + String(e && e.message ? e.message : e);
}

// TS013 entry points: they return {data} or {errors}, and never throw.
function decodeUplink(input) {
  try {
    return { data: cnDecodeUplink(input.fPort, input.bytes) };
  } catch (e) {
    return { errors: [cnErrorText(e)] };
  }
}

function decodeDownlink(input) {
  try {
    return { data: cnDecodeDownlink(input.fPort, input.bytes) };
  } catch (e) {
    return { errors: [cnErrorText(e)] };
  }
}

function encodeDownlink(input) {
  try {
    return cnEncodeDownlink(input.data);
  } catch (e) {
    return { errors: [cnErrorText(e)] };
  }
}
