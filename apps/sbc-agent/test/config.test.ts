import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadAgentConfig } from "../src/config";

const dir = mkdtempSync(join(tmpdir(), "galette-agent-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const write = (name: string, body: unknown) => {
  const file = join(dir, name);
  writeFileSync(file, typeof body === "string" ? body : JSON.stringify(body));
  return file;
};
const base = { controllerUrl: "https://127.0.0.1:8443", device: "pi-1", interface: "eth0" };

describe("agent config", () => {
  it("fills defaults and resolves paths against the file's directory", () => {
    const c = loadAgentConfig(write("ok.json", { ...base, dataDir: "state", netns: "dut" }));
    expect(c.certFile).toBe(join(dir, "device.crt"));
    expect(c.keyFile).toBe(join(dir, "device.key"));
    expect(c.caFile).toBe(join(dir, "ca.crt"));
    expect(c.dataDir).toBe(join(dir, "state"));
    expect(c.stateDir).toBe("/run/galette");
    expect(c).toMatchObject({
      xdpMode: "auto",
      pollIntervalSeconds: 30,
      workerThreads: 1,
      busyPoll: false,
      websocket: true,
      netns: "dut",
    });
  });

  it("names the file and each bad key", () => {
    const file = write("bad.json", {
      ...base,
      controllerUrl: "http://x",
      pollIntervalSeconds: -1,
      workerThreads: 1.5,
    });
    let message = "";
    try {
      loadAgentConfig(file);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain(file);
    expect(message).toMatch(/controllerUrl: controllerUrl must be an https:\/\/ URL/);
    expect(message).toMatch(/pollIntervalSeconds: /);
    expect(message).toMatch(/workerThreads: /);
  });

  it("takes every replica's URL, each https", () => {
    const urls = ["https://10.0.0.1:8443", "https://10.0.0.2:8443"];
    expect(loadAgentConfig(write("replicas.json", { ...base, controllerUrls: urls })).controllerUrls).toEqual(
      urls,
    );
    const file = write("bad-replicas.json", {
      ...base,
      controllerUrls: ["https://10.0.0.1:8443", "http://10.0.0.2"],
    });
    expect(() => loadAgentConfig(file)).toThrow(
      /controllerUrls\.1: controllerUrls: each must be an https:\/\/ URL/,
    );
  });

  it("takes a pair of ports instead of an interface, and refuses both or a bad pair", () => {
    const { interface: _, ...noIface } = base;
    const c = loadAgentConfig(write("ports.json", { ...noIface, ports: ["gbe0", "gbe1"] }));
    expect(c.interface).toBe("gbe0");
    expect(c.ports).toEqual(["gbe0", "gbe1"]);
    expect(() => loadAgentConfig(write("both.json", { ...base, ports: ["gbe0", "gbe1"] }))).toThrow(
      /both\.json: set either interface \(one port\) or ports \(two\), not both/,
    );
    expect(() => loadAgentConfig(write("one.json", { ...noIface, ports: ["gbe0"] }))).toThrow(
      /ports: ports takes exactly two interface names/,
    );
    expect(() => loadAgentConfig(write("same.json", { ...noIface, ports: ["gbe0", "gbe0"] }))).toThrow(
      /ports: ports must name two different interfaces/,
    );
  });

  it("requires an interface, valid JSON and an existing file", () => {
    const { interface: _, ...noIface } = base;
    expect(() => loadAgentConfig(write("noif.json", noIface))).toThrow(/noif\.json: interface: not set/);
    expect(() => loadAgentConfig(write("broken.json", "{ nope"))).toThrow(/broken\.json: not valid JSON/);
    expect(() => loadAgentConfig(write("array.json", "[]"))).toThrow(/array\.json: expected a JSON object/);
    expect(() => loadAgentConfig(join(dir, "missing.json"))).toThrow(
      /missing\.json: cannot read the agent config/,
    );
    expect(() => loadAgentConfig(write("ns.json", { ...base, netns: "../x" }))).toThrow(
      /netns: netns must be/,
    );
  });

  it("takes pinned release keys as base64 DER and refuses anything else, naming the key", () => {
    const { publicKey } = generateKeyPairSync("ed25519");
    const key = publicKey.export({ format: "der", type: "spki" }).toString("base64");
    const c = loadAgentConfig(write("keys.json", { ...base, releaseKeys: [key] }));
    expect(c.releaseKeys).toEqual([key]);
    expect(c.allowUnsigned).toBe(false);
    expect(loadAgentConfig(write("nokeys.json", base)).releaseKeys).toEqual([]);
    expect(() => loadAgentConfig(write("junk.json", { ...base, releaseKeys: ["not base64!"] }))).toThrow(
      /junk\.json: invalid agent config:\n {2}releaseKeys\.0: expected base64/,
    );
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
    const ecKey = ec.export({ format: "der", type: "spki" }).toString("base64");
    expect(() => loadAgentConfig(write("ec.json", { ...base, releaseKeys: [key, ecKey] }))).toThrow(
      /ec\.json: releaseKeys\.1: not a release public key: release keys are Ed25519, got ec/,
    );
  });
});
