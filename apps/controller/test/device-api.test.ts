import { Agent, request as httpsRequest } from "node:https";
import type { TLSSocket } from "node:tls";
import { createCa, issueDeviceCert } from "@galette/pki";
import { type DeviceAssignment, type DeviceStatusReport, PROTOCOL_VERSION } from "@galette/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { DataDir } from "../src/control";
import { sha256Hex } from "../src/storage/artifacts";
import { deviceSocket, fakeBuilder, type Harness, MACSWAP_TOML, startHarness, statusReport } from "./helpers";

/** A device's status report: converged on acl version 1 unless `fields` say otherwise. */
const convergedReport = (fields: Partial<DeviceStatusReport> = {}) =>
  statusReport({
    kernelVersion: "6.18.0",
    installed: { chain: "acl", version: 1 },
    state: "converged",
    ...fields,
  });

describe("device API over mTLS", () => {
  let h: Harness;
  /** sha256 of the macswap crate as published (stored beside the artifacts) */
  let macswapSource: string;

  const assign = async (chain: string, devices: string[]) => {
    const res = await h.call("/v1/assignments", { method: "POST", token: h.token, body: { chain, devices } });
    expect(res.status, res.body.toString()).toBe(200);
  };

  beforeAll(async () => {
    h = await startHarness({ nfBuilder: fakeBuilder });
    await h.enrol("pi-1", { role: "edge" });
    await h.enrol("pi-2", { role: "core" });
    macswapSource = (await h.publishExamples()).macswap.sourceDigest;
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  it("gives an enrolled device with no chain an empty assignment", async () => {
    const res = await h.call("/v1/device/assignment", { client: h.asDevice("pi-1") });
    expect(res.status).toBe(200);
    expect(res.json<DeviceAssignment>()).toEqual({
      protocolVersion: PROTOCOL_VERSION,
      device: "pi-1",
      chain: null,
      deadMan: { graceSeconds: 60 },
    });
  });

  it("serves the assigned chain graph with artifacts for the device's CPU, and 304 for a matching ETag", async () => {
    await assign("macswap", ["pi-1"]);
    await assign("acl", ["pi-2"]);
    const res = await h.call("/v1/device/assignment?arch=aarch64", { client: h.asDevice("pi-1") });
    expect(res.status).toBe(200);
    const etag = res.headers.etag as string;
    expect(etag).toMatch(/^"[0-9a-f]{64}"$/);
    const assignment = res.json<DeviceAssignment>();
    expect(assignment.triple).toBe("aarch64-unknown-linux-gnu");
    const chain = assignment.chain!;
    expect(chain.name).toBe("macswap");
    expect(chain.nfs).toHaveLength(1);
    const nf = chain.nfs[0]!;
    expect(nf.artifacts.bpfObject?.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(chain.entry).toEqual({ kind: "tailcall", target: nf.uuid });
    expect(nf.actions).toEqual([{ variant: expect.any(String), kind: "tx" }]);
    expect(chain.maps).toEqual([
      {
        id: "macswap.counters",
        name: "counters",
        type: "array",
        keySize: 4,
        valueSize: 8,
        maxEntries: 1,
        shared: false,
        owner: nf.uuid,
      },
    ]);

    const again = await h.call("/v1/device/assignment?arch=aarch64", {
      client: h.asDevice("pi-1"),
      headers: { "if-none-match": etag },
    });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
    const stale = await h.call("/v1/device/assignment?arch=aarch64", {
      client: h.asDevice("pi-1"),
      headers: { "if-none-match": '"0000"' },
    });
    expect(stale.status).toBe(200);
  });

  it("lets a device download its own artifacts, byte-exact, and nothing else", async () => {
    const mine = (
      await h.call("/v1/device/assignment", { client: h.asDevice("pi-1") })
    ).json<DeviceAssignment>();
    const theirs = (
      await h.call("/v1/device/assignment", { client: h.asDevice("pi-2") })
    ).json<DeviceAssignment>();
    const myDigest = mine.chain!.nfs[0]!.artifacts.bpfObject!.digest;
    const theirDigest = theirs.chain!.nfs[0]!.artifacts.bpfObject!.digest;
    expect(myDigest).not.toBe(theirDigest);

    const ok = await h.call(`/v1/device/artifacts/${myDigest}`, { client: h.asDevice("pi-1") });
    expect(ok.status).toBe(200);
    expect(sha256Hex(ok.body)).toBe(myDigest);

    const denied = await h.call(`/v1/device/artifacts/${theirDigest}`, { client: h.asDevice("pi-1") });
    expect(denied.status).toBe(403);
    expect(denied.json().error).toMatch(/not part of device pi-1's assignment/);
    // The crate source is stored beside the artifacts, but never served to a device, not even
    // the one running that NF, under any spelling of its digest.
    for (const digest of [macswapSource, macswapSource.toUpperCase(), `${macswapSource}.tar`]) {
      const source = await h.call(`/v1/device/artifacts/${digest}`, { client: h.asDevice("pi-1") });
      expect(source.status, digest).toBeGreaterThanOrEqual(400);
      expect(source.status, digest).toBeLessThan(500);
      expect(source.body.toString(), digest).not.toContain("Cargo.toml");
    }
    const source = await h.call(`/v1/device/artifacts/${macswapSource}`, { client: h.asDevice("pi-1") });
    expect(source.status).toBe(403);
    expect(source.json().error).toMatch(/not part of device pi-1's assignment/);
    const bad = await h.call("/v1/device/artifacts/..%2F..%2Fca.key", { client: h.asDevice("pi-1") });
    expect(bad.status).toBe(400);
  });

  it("has no route to read another device's assignment: identity comes only from the certificate", async () => {
    const res = await h.call("/v1/device/assignment?device=pi-2", { client: h.asDevice("pi-1") });
    expect(res.json<DeviceAssignment>().device).toBe("pi-1");
    const operatorRoute = await h.call("/v1/devices/pi-2", { client: h.asDevice("pi-1") });
    expect(operatorRoute.status).toBe(401);
  });

  it("refuses requests without a certificate, or with a foreign, expired, unenrolled or superseded one", async () => {
    const none = await h.call("/v1/device/assignment");
    expect(none.status).toBe(401);
    expect(none.json().error).toBe("client certificate required");

    const foreignCa = createCa({ commonName: "evil CA" });
    const foreign = issueDeviceCert(foreignCa, "pi-1");
    const refused = await h.call("/v1/device/assignment", { client: foreign });
    expect(refused.status).toBe(403);
    expect(refused.json().error).toMatch(/not accepted/);

    // Signed by our CA but never enrolled (e.g. a key leaked from a bundle that was re-issued).
    const data = DataDir.open(h.dir);
    const unenrolled = issueDeviceCert(data.pki.issuer, "pi-9");
    const expired = issueDeviceCert(data.pki.issuer, "pi-1", {
      validity: {
        notBefore: new Date(Date.now() - 10 * 86_400_000),
        notAfter: new Date(Date.now() - 86_400_000),
      },
    });
    const secondPi1 = issueDeviceCert(data.pki.issuer, "pi-1");
    await data.close();
    expect((await h.call("/v1/device/assignment", { client: unenrolled })).status).toBe(403);
    const expiredRes = await h.call("/v1/device/assignment", { client: expired });
    expect(expiredRes.status).toBe(403);
    expect(expiredRes.json().error).toMatch(/CERT_HAS_EXPIRED/);
    const wrongSerial = await h.call("/v1/device/assignment", { client: secondPi1 });
    expect(wrongSerial.status).toBe(403);
    expect(wrongSerial.json().error).toMatch(/not the one enrolled/);
    expect(
      h.logs.some((l) => l.msg === "device request refused" && l.reason === "client certificate required"),
    ).toBe(true);
  });

  it("stores status reports and shows them in the device list", async () => {
    const report = convergedReport({
      counters: [{ uuid: "6c0a6f1e-3b1d-4f5e-9a57-2f4d1c8e0b7a", counters: { packets: 42 } }],
    });
    const res = await h.call("/v1/device/status", {
      method: "POST",
      client: h.asDevice("pi-2"),
      body: report,
    });
    expect(res.status).toBe(204);
    const bad = await h.call("/v1/device/status", {
      method: "POST",
      client: h.asDevice("pi-2"),
      body: { ...report, state: "dancing" },
    });
    expect(bad.status).toBe(400);
    expect(bad.json().error).toMatch(/^invalid status report: state:/);
    const list = await h.call("/v1/devices", { token: h.token });
    const pi2 = list
      .json<{ devices: Array<Record<string, unknown>> }>()
      .devices.find((d) => d.name === "pi-2")!;
    expect(pi2.installed).toEqual({ chain: "acl", version: 1 });
    expect(pi2.triple).toBe("x86_64-unknown-linux-gnu");
    expect(pi2.lastSeenAt).not.toBeNull();
  });

  it("refuses bad capability and rollback reports, a grace out of range, and confirm without a rollback", async () => {
    const report = convergedReport({ installed: null, state: "idle" });
    const post = (body: object) =>
      h.call("/v1/device/status", { method: "POST", client: h.asDevice("pi-1"), body });
    const badCaps = await post({ ...report, capabilities: { afXdp: "maybe" } });
    expect(badCaps.status).toBe(400);
    expect(badCaps.json().error).toMatch(/^invalid status report: capabilities\./);
    const badRollback = await post({
      ...report,
      rollback: { chain: "acl", version: 0, reason: "x", at: "t", restored: null },
    });
    expect(badRollback.status).toBe(400);
    expect(badRollback.json().error).toMatch(/^invalid status report: rollback\.version/);
    expect((await post(report)).status).toBe(204);

    const confirm = await h.call("/v1/devices/pi-1/confirm", { method: "POST", token: h.token, body: {} });
    expect(confirm.status).toBe(409);
    expect(confirm.json().error).toBe(
      "device pi-1 has no rolled-back chain to confirm (its agent reports none)",
    );
    const unknown = await h.call("/v1/devices/nope/confirm", { method: "POST", token: h.token, body: {} });
    expect(unknown.status).toBe(404);

    const grace = await h.call("/v1/assignments", {
      method: "POST",
      token: h.token,
      body: { chain: "acl", devices: ["pi-1"], graceSeconds: 7200 },
    });
    expect(grace.status).toBe(400);
    expect(grace.json().error).toMatch(/graceSeconds/);
    const plan = await h.call("/v1/devices/nope/plan", {
      method: "POST",
      token: h.token,
      body: { file: "x.toml", toml: '[chain]\nname = "x"\n' },
    });
    expect(plan.status).toBe(404);
  });

  it("notifies a connected device over ws when its chain is pushed or re-assigned", async () => {
    const { ws, messages, received: waitFor } = deviceSocket(h, h.asDevice("pi-1"));
    await waitFor(1);
    expect(messages[0]).toEqual({ type: "hello", protocolVersion: PROTOCOL_VERSION, device: "pi-1" });

    const online = await h.call("/v1/devices/pi-1", { token: h.token });
    expect(online.json().online).toBe(true);

    await h.pushChain(MACSWAP_TOML.replace('to = ["tx"]', 'to = ["pass"]'));
    await waitFor(2);
    const current = await h.call("/v1/device/assignment", { client: h.asDevice("pi-1") });
    expect(messages[1]).toEqual({ type: "assignment-changed", etag: current.headers.etag });

    await assign("acl", ["pi-1"]);
    await waitFor(3);
    expect(messages[2]!.type).toBe("assignment-changed");
    ws.close();
  });

  it("puts operator map entries into the assignment (new ETag) and measures push-to-converged", async () => {
    await assign("acl", ["pi-2"]);
    const before = await h.call("/v1/device/assignment", { client: h.asDevice("pi-2") });
    const key = "200000000a000001";
    const set = await h.call("/v1/chains/acl/maps/acl.allow_list/entries", {
      method: "PUT",
      token: h.token,
      body: { set: [{ key, value: "01" }] },
    });
    expect(set.status, set.body.toString()).toBe(200);
    const after = await h.call("/v1/device/assignment", {
      client: h.asDevice("pi-2"),
      headers: { "if-none-match": before.headers.etag as string },
    });
    expect(after.status).toBe(200);
    expect(after.json<DeviceAssignment>().chain!.mapEntries).toEqual([
      { map: "acl.allow_list", entries: [{ key, value: "01" }] },
    ]);
    const report = convergedReport();
    expect(
      (await h.call("/v1/device/status", { method: "POST", client: h.asDevice("pi-2"), body: report }))
        .status,
    ).toBe(204);
    const metrics = (await h.call("/metrics", { token: h.token })).body.toString();
    expect(metrics).toMatch(/^galette_push_to_converged_seconds_count [1-9]/m);
    const wrongProtocol = await h.call("/v1/device/assignment", {
      client: h.asDevice("pi-2"),
      headers: { "x-galette-protocol": "99" },
    });
    expect(wrongProtocol.status).toBe(400);
    expect(wrongProtocol.json().error).toBe(
      `agent speaks protocol 99, this controller speaks ${PROTOCOL_VERSION}: upgrade the older side`,
    );
  });

  it("refuses a device revoked while the controller runs, on its next request and its open ws", async () => {
    const socket = deviceSocket(h, h.asDevice("pi-2"));
    await socket.hello;
    expect((await h.call("/v1/device/assignment", { client: h.asDevice("pi-2") })).status).toBe(200);
    // An agent that resumes its TLS session never re-sends its certificate: it must be refused too.
    const sessions = new Agent({ keepAlive: false, maxCachedSessions: 4 });
    const resumable = () =>
      new Promise<{ status: number; resumed: boolean }>((resolve, reject) => {
        const req = httpsRequest(
          `${h.controller.url}/v1/device/assignment`,
          { agent: sessions, ca: h.caPem, cert: h.bundles["pi-2"]!.certPem, key: h.bundles["pi-2"]!.keyPem },
          (res) => {
            res.resume();
            res.on("end", () =>
              resolve({ status: res.statusCode ?? 0, resumed: (res.socket as TLSSocket).isSessionReused() }),
            );
          },
        );
        req.on("error", reject);
        req.end();
      });
    expect(await resumable()).toEqual({ status: 200, resumed: false });

    // Revoked directly on the data dir (as `galette device revoke --data DIR` does), not through the server.
    const data = DataDir.open(h.dir);
    await data.revokeDevice("pi-2");
    await data.close();

    const res = await h.call("/v1/device/assignment", { client: h.asDevice("pi-2") });
    expect(res.status).toBe(403);
    expect(res.json().error).toMatch(/revoked/);
    expect(await resumable()).toEqual({ status: 403, resumed: true });
    expect((await socket.closed).code).toBe(4403);
    const reconnect = new WebSocket(`${h.controller.url.replace("https", "wss")}/v1/device/notifications`, {
      ca: h.caPem,
      cert: h.bundles["pi-2"]!.certPem,
      key: h.bundles["pi-2"]!.keyPem,
    });
    const status = await new Promise<number>((resolve) => {
      reconnect.on("unexpected-response", (req, response) => {
        req.destroy();
        resolve(response.statusCode ?? 0);
      });
      reconnect.on("open", () => resolve(101));
    });
    expect(status).toBe(403);
    expect(
      h.logs.some((l) => l.msg === "device request refused" && String(l.reason).includes("revoked")),
    ).toBe(true);
  });

  it("keeps devices, chains, assignments and artifacts across a restart", async () => {
    const before = await h.call("/v1/device/assignment", { client: h.asDevice("pi-1") });
    await h.restart();
    const after = await h.call("/v1/device/assignment", { client: h.asDevice("pi-1") });
    expect(after.status).toBe(200);
    expect(after.headers.etag).toBe(before.headers.etag);
    const digest = after.json<DeviceAssignment>().chain!.nfs[0]!.artifacts.bpfObject!.digest;
    expect((await h.call(`/v1/device/artifacts/${digest}`, { client: h.asDevice("pi-1") })).status).toBe(200);
    expect((await h.call("/v1/device/assignment", { client: h.asDevice("pi-2") })).status).toBe(403);
    const chains = await h.call("/v1/chains", { token: h.token });
    expect(chains.json<{ chains: Array<{ name: string; latestVersion: number }> }>().chains).toEqual([
      expect.objectContaining({ name: "acl", latestVersion: 1 }),
      expect.objectContaining({ name: "macswap", latestVersion: 2 }),
    ]);
  });
});
