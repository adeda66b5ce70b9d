import { request as httpsRequest } from "node:https";
import { DeviceNotification, type TracedFrame, TraceStreamLine } from "@galette/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type Harness, startHarness } from "./helpers";

const frame = (n: number): TracedFrame => ({
  frame: n,
  iface: "eth0",
  time: "2026-11-30T20:00:00.000Z",
  monotonicNs: "1000",
  len: 60,
  path: [{ nf: "acl", instance: 0, tier: "xdp", variant: "Denied", action: "drop", elapsedNs: 900 }],
  verdict: "drop",
  summary: "acl→drop",
});

describe("POST /v1/devices/:name/trace (galette trace --device)", () => {
  let h: Harness;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    h = await startHarness();
    await h.enrol("pi-1");
    await h.enrol("pi-2");
    for (const scopes of [["trace"], ["read"], ["admin"]]) {
      const res = await h.call("/v1/tokens", {
        method: "POST",
        token: h.token,
        body: { name: `only-${scopes[0]}`, scopes },
      });
      expect(res.status).toBe(201);
      tokens[scopes[0]!] = res.json<{ token: string }>().token;
    }
  }, 60_000);
  afterAll(() => h?.cleanup());

  const start = (
    device: string,
    token: string | undefined,
    body: object,
    client?: { certPem: string; keyPem: string },
  ) =>
    h.call(`/v1/devices/${device}/trace`, {
      method: "POST",
      ...(token ? { token } : {}),
      body,
      ...(client ? { client } : {}),
    });

  it("needs the trace scope: read, admin, no token and a device certificate are refused", async () => {
    for (const scope of ["read", "admin"]) {
      const res = await start("pi-1", tokens[scope], { count: 1 });
      expect(res.status, scope).toBe(403);
      expect(res.json().error).toBe(`token only-${scope} lacks the trace scope this route needs`);
    }
    expect((await start("pi-1", undefined, { count: 1 })).status).toBe(401);
    // a device's own certificate is not an operator credential
    const asDevice = await start("pi-1", undefined, { count: 1 }, h.asDevice("pi-1"));
    expect([401, 403]).toContain(asDevice.status);
    // nor does a trace token open the device side of a session
    const upload = await h.call(`/v1/device/traces/${"0".repeat(32)}`, {
      method: "POST",
      token: tokens.trace,
      body: { frames: [] },
    });
    expect([401, 403]).toContain(upload.status);
  });

  it("refuses an unknown device, a bad request and a device not connected here, clearly", async () => {
    const unknown = await start("nope", tokens.trace, {});
    expect(unknown.status).toBe(404);
    expect(unknown.json().error).toBe("device nope is not enrolled");
    const bad = await start("pi-1", tokens.trace, { count: 0 });
    expect(bad.status).toBe(400);
    expect(bad.json().error).toMatch(/^invalid trace request: count/);
    const offline = await start("pi-1", tokens.trace, { count: 1 });
    expect(offline.status).toBe(409);
    expect(offline.json().error).toMatch(/^device pi-1 is not connected to this controller/);
  });

  it("asks the device over its ws, takes frames only from that device, and streams them to the operator", async () => {
    const ws = new WebSocket(`${h.controller.url.replace("https", "wss")}/v1/device/notifications`, {
      ca: h.caPem,
      cert: h.bundles["pi-1"]!.certPem,
      key: h.bundles["pi-1"]!.keyPem,
    });
    const messages: DeviceNotification[] = [];
    ws.on("message", (d) => messages.push(DeviceNotification.parse(JSON.parse(String(d)))));
    const until = async (what: () => boolean, label: string) => {
      for (let i = 0; i < 250 && !what(); i++) await new Promise((r) => setTimeout(r, 20));
      if (!what()) throw new Error(`timed out waiting for ${label}`);
    };
    try {
      await until(() => messages.some((m) => m.type === "hello"), "hello");
      // the operator's streaming request
      const lines: TraceStreamLine[] = [];
      let status = 0;
      const done = new Promise<void>((resolve, reject) => {
        const body = Buffer.from(JSON.stringify({ filter: "udp", count: 2, timeoutSeconds: 20 }));
        const req = httpsRequest(
          new URL("/v1/devices/pi-1/trace", h.controller.url),
          {
            method: "POST",
            ca: h.caPem,
            headers: {
              authorization: `Bearer ${tokens.trace}`,
              "content-type": "application/json",
              "content-length": String(body.length),
            },
          },
          (res) => {
            status = res.statusCode ?? 0;
            let buf = "";
            res.setEncoding("utf8");
            res.on("data", (c: string) => {
              buf += c;
              let nl = buf.indexOf("\n");
              while (nl >= 0) {
                lines.push(TraceStreamLine.parse(JSON.parse(buf.slice(0, nl))));
                buf = buf.slice(nl + 1);
                nl = buf.indexOf("\n");
              }
            });
            res.on("end", resolve);
            res.on("error", reject);
          },
        );
        req.on("error", reject);
        req.end(body);
      });
      await until(() => messages.some((m) => m.type === "trace"), "the trace notification");
      const asked = messages.find((m) => m.type === "trace") as Extract<
        DeviceNotification,
        { type: "trace" }
      >;
      expect(asked.request).toMatchObject({
        filter: "udp",
        count: 2,
        timeoutSeconds: 20,
        sample: 1,
        withData: false,
      });

      // a second trace on the same device is refused while this one runs
      const again = await start("pi-1", tokens.trace, { count: 1 });
      expect(again.status).toBe(409);
      expect(again.json().error).toBe("a trace is already running on device pi-1");

      const upload = (device: string, id: string, body: object) =>
        h.call(`/v1/device/traces/${id}`, { method: "POST", client: h.asDevice(device), body });
      // another device cannot feed (or probe) this session: it looks like no session at all
      const foreign = await upload("pi-2", asked.id, { frames: [frame(1)] });
      expect(foreign.status).toBe(404);
      expect(foreign.json().error).toBe(`no trace ${asked.id} for this device`);
      expect((await upload("pi-1", "f".repeat(32), { frames: [] })).status).toBe(404);
      expect((await upload("pi-1", "../../x", { frames: [] })).status).toBeGreaterThanOrEqual(400);
      const malformed = await upload("pi-1", asked.id, { frames: [{ frame: -1 }] });
      expect(malformed.status).toBe(400);

      const first = await upload("pi-1", asked.id, { frames: [frame(1)] });
      expect(first.status).toBe(200);
      expect(first.json()).toEqual({ ok: true, more: true });
      // more than asked: the rest is not forwarded and the session ends
      const second = await upload("pi-1", asked.id, { frames: [frame(2), frame(3)] });
      expect(second.json()).toEqual({ ok: true, more: false });
      await done;
      expect(status).toBe(200);
      expect(lines).toEqual([
        { type: "frame", frame: frame(1) },
        { type: "frame", frame: frame(2) },
        { type: "end", frames: 2, reason: "count reached" },
      ]);
      expect((await upload("pi-1", asked.id, { frames: [] })).status).toBe(404);
    } finally {
      ws.close();
    }
  }, 60_000);
});
