// Bridge to the npm package lora-packet (an independent LoRaWAN implementation) for the citynode tests.
// Reads a JSON array of requests on stdin, writes a JSON array of results on stdout (one per request;
// a request that makes lora-packet throw yields {"error": message}). Run with NODE_PATH=tests/js/node_modules.
//
// Conventions: every byte field is hex; DevAddr, AppEUI/JoinEUI, DevEUI, NetID and nonces are given and
// returned big-endian (MSB first) as lora-packet presents them; fcnt is the 32-bit counter and its two
// high bytes are passed to lora-packet as FCntMSBytes (in wire order, as its MIC code expects).
"use strict";
const lp = require("lora-packet");

const hx = (s) => Buffer.from(s || "", "hex");
const out = (b) => (b ? Buffer.from(b).toString("hex") : null);

function msb(fcnt) {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(Math.floor((fcnt || 0) / 0x10000) & 0xffff, 0);
  return b;
}

function describe(p) {
  const r = { mtype: p.getMType(), dir: p.getDir() };
  if (p.isDataMessage()) {
    Object.assign(r, {
      devaddr: out(p.DevAddr),
      fcnt16: p.getFCnt(),
      fport: p.getFPort(),
      adr: p.getFCtrlADR(),
      ack: p.getFCtrlACK(),
      adr_ack_req: p.getFCtrlADRACKReq(),
      fpending: p.getFCtrlFPending(),
      fopts: out(p.FOpts),
      frmpayload: out(p.FRMPayload),
      confirmed: p.isConfirmed(),
    });
  } else if (p.isJoinRequestMessage()) {
    Object.assign(r, { appeui: out(p.AppEUI), deveui: out(p.DevEUI), devnonce: out(p.DevNonce) });
  } else if (p.isJoinAcceptMessage()) {
    Object.assign(r, {
      appnonce: out(p.AppNonce),
      netid: out(p.NetID),
      devaddr: out(p.DevAddr),
      dlsettings: out(p.DLSettings),
      rxdelay: out(p.RxDelay),
      cflist: out(p.CFList),
    });
  }
  r.mic = out(p.MIC);
  return r;
}

const ops = {
  // Decode a PHYPayload; check its MIC and decrypt when keys are given.
  decode(q) {
    let p = lp.fromWire(hx(q.phy));
    if (p.isJoinAcceptMessage() && q.appkey) {
      p = lp.fromWire(lp.decryptJoinAccept(p, hx(q.appkey)));
    }
    const r = describe(p);
    if (p.isDataMessage() && q.nwkskey) {
      r.mic_ok = lp.verifyMIC(p, hx(q.nwkskey), undefined, msb(q.fcnt));
      if (p.FRMPayload && p.FRMPayload.length) {
        r.payload = out(lp.decrypt(p, hx(q.appskey), hx(q.nwkskey), msb(q.fcnt)));
      }
    } else if ((p.isJoinRequestMessage() || p.isJoinAcceptMessage()) && q.appkey) {
      r.mic_ok = lp.verifyMIC(p, undefined, hx(q.appkey));
    }
    return r;
  },
  // Build a data frame (FOpts in clear, as LoRaWAN 1.0.x sends them).
  build_data(q) {
    const fields = {
      MType: q.mtype,
      DevAddr: hx(q.devaddr),
      FCtrl: { ADR: !!q.adr, ACK: !!q.ack, ADRACKReq: !!q.adr_ack_req, FPending: !!q.fpending },
      FCnt: (q.fcnt || 0) & 0xffff,
      FOpts: hx(q.fopts),
      FPort: q.fport == null ? undefined : q.fport, // lora-packet takes a JSON null for port 0
      payload: hx(q.payload),
    };
    const p = lp.fromFields(fields, hx(q.appskey), hx(q.nwkskey), undefined, msb(q.fcnt));
    // fromFields only computes the MIC when the frame has an FPort; a FOpts-only frame needs it here.
    if (q.nwkskey) lp.recalculateMIC(p, hx(q.nwkskey), undefined, msb(q.fcnt));
    return { phy: out(p.getPHYPayload()) };
  },
  // Build an encrypted join-accept as a network server would send it.
  build_join_accept(q) {
    const fields = {
      MType: "Join Accept",
      AppNonce: hx(q.appnonce),
      NetID: hx(q.netid),
      DevAddr: hx(q.devaddr),
      DLSettings: q.dlsettings,
      RxDelay: q.rxdelay,
      CFList: hx(q.cflist),
    };
    const p = lp.fromFields(fields, undefined, undefined, hx(q.appkey));
    return { phy: out(p.getPHYPayload()) };
  },
  // Build a join-request with its MIC.
  build_join_request(q) {
    const fields = { MType: "Join Request", AppEUI: hx(q.appeui), DevEUI: hx(q.deveui), DevNonce: hx(q.devnonce) };
    const p = lp.fromFields(fields, undefined, undefined, hx(q.appkey));
    return { phy: out(p.getPHYPayload()) };
  },
  session_keys(q) {
    const k = lp.generateSessionKeys10(hx(q.appkey), hx(q.netid), hx(q.appnonce), hx(q.devnonce));
    return { nwkskey: out(k.NwkSKey), appskey: out(k.AppSKey) };
  },
};

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const results = JSON.parse(input).map((q) => {
    try {
      return ops[q.op](q);
    } catch (e) {
      return { error: String(e && e.message ? e.message : e) };
    }
  });
  process.stdout.write(JSON.stringify(results) + "\n");
});
