import { join } from "node:path";
import type { DeviceAssignment } from "@galette/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packCrateDir } from "../src/crate-archive";
import { BuildQueue, nfBuilderForServe } from "../src/nf-builder";
import { sha256Hex } from "../src/storage/artifacts";
import { type Harness, MACSWAP_TOML, startHarness } from "./helpers";

const root = join(import.meta.dirname, "../../..");
const EM_BPF = 247;
const EM_X86_64 = 62;

/** The real NF compiler behind POST /v1/nfs: the published example builds and reaches a device. */
describe("NF publish builds with @galette/nf-build", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ nfBuilder: nfBuilderForServe(["bpf", "x86_64"]) });
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  it("compiles macswap for XDP and x86_64 and serves both to an assigned device", async () => {
    const published = await h.call("/v1/nfs", {
      method: "POST",
      token: h.token,
      headers: { "content-type": "application/x-tar" },
      body: await packCrateDir(join(root, "nf-examples", "macswap")),
    });
    expect(published.status, published.body.toString()).toBe(201);
    const body = published.json<{
      build: string;
      artifacts: Array<{ kind: string; triple?: string; digest: string }>;
    }>();
    expect(body.build).toBe("built");
    expect(body.artifacts.map((a) => [a.kind, a.triple])).toEqual([
      ["bpf-object", undefined],
      ["native-lib", "x86_64-unknown-linux-gnu"],
    ]);

    expect(
      (await h.call("/v1/chains", { method: "POST", token: h.token, body: { toml: MACSWAP_TOML } })).status,
    ).toBe(201);
    const enrolled = await h.call("/v1/devices", { method: "POST", token: h.token, body: { name: "nuc-1" } });
    const client = enrolled.json<{ certPem: string; keyPem: string }>();
    await h.call("/v1/assignments", {
      method: "POST",
      token: h.token,
      body: { chain: "macswap", devices: ["nuc-1"] },
    });

    const assignment = (
      await h.call("/v1/device/assignment?arch=x86_64", { client })
    ).json<DeviceAssignment>();
    const nf = assignment.chain!.nfs[0]!;
    expect(nf.buildHash).not.toBe("");
    // macswap runs only in XDP, so the assignment lists just its BPF object; its native
    // library (for a userland placement in another chain) is still one of its artifacts.
    expect(nf.xdp && !nf.userland && nf.artifacts.native === undefined).toBe(true);
    const nativeDigest = body.artifacts.find((a) => a.kind === "native-lib")!.digest;
    for (const [digest, machine] of [
      [nf.artifacts.bpfObject!.digest, EM_BPF],
      [nativeDigest, EM_X86_64],
    ] as const) {
      const res = await h.call(`/v1/device/artifacts/${digest}`, { client });
      expect(res.status).toBe(200);
      expect(sha256Hex(res.body)).toBe(digest);
      expect(res.body.subarray(0, 4).toString("latin1")).toBe("\x7fELF");
      expect(res.body.readUInt16LE(18)).toBe(machine);
    }
  }, 300_000);
});

describe("the build queue", () => {
  it("runs at most its limit at once, the rest in arrival order, and frees a slot when a task fails", async () => {
    const queue = new BuildQueue(2);
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const task = (i: number) => async () => {
      started.push(i);
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
      if (i === 1) throw new Error("task 1 failed");
      return i;
    };
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map((i) => queue.run(task(i))));
    expect(peak).toBe(2);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(results.map((r) => r.status)).toEqual([
      "fulfilled",
      "rejected",
      "fulfilled",
      "fulfilled",
      "fulfilled",
    ]);
    expect(queue.depth).toEqual({ running: 0, waiting: 0 });
  });

  it("refuses a bad GALETTE_NF_BUILD_JOBS or GALETTE_NF_BUILD_TIMEOUT by name", () => {
    for (const name of ["GALETTE_NF_BUILD_JOBS", "GALETTE_NF_BUILD_TIMEOUT"]) {
      process.env[name] = "0";
      try {
        expect(() => nfBuilderForServe(["bpf"])).toThrow(`${name} must be a positive integer, got "0"`);
      } finally {
        delete process.env[name];
      }
    }
  });
});
