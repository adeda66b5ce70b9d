/**
 * Per-device placement checks: a graph against what a device's agent probed, and the
 * helper scan that finds nf::repeat (bpf_loop) in a compiled BPF object.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NfInterface } from "@galette/chain";
import type { DeviceCapabilities } from "@galette/protocol";
import { compileBpfObject } from "@galette/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { BPF_FUNC_LOOP, bpfHelperCalls, chainRefusal, servedDevice } from "../src/capabilities";
import { deviceCapabilities, graphFitsDevice, planChainForPush } from "../src/chains";
import { parseGrace } from "../src/commands/chain";
import { ArtifactStore } from "../src/storage/artifacts";
import type { DeviceRecord } from "../src/storage/repository";
import { openSqliteRepository } from "../src/storage/sqlite";
import { PROBED_CAPABILITIES } from "./helpers";

const root = join(import.meta.dirname, "../../..");
const dir = mkdtempSync(join(tmpdir(), "galette-caps-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const at = (line: number) => ({ file: "lib.rs", line, column: 1 });
const iface = (actions: string[], maps: Array<[string, number, number]>): NfInterface => ({
  file: "lib.rs",
  actions: actions.map((name, i) => ({ name, location: at(i + 1) })),
  maps: maps.map(([name, keySize, valueSize], i) => ({ name, keySize, valueSize, location: at(i + 20) })),
});

/** What this kernel's probe says, as an agent reports it. */
const probed = PROBED_CAPABILITIES;
const smartSfp: DeviceCapabilities = {
  ...probed,
  kernelRelease: "4.14.98",
  kernel: { major: 4, minor: 14 },
  availableMemoryBytes: 64 * 1024 ** 2,
  bpfLoop: false,
  afXdp: false,
  mapTypes: ["hash_map", "array", "percpu_array", "percpu_hash", "lru_hash"],
  interfaces: [{ name: "gbe0", xdp: "generic", rxQueues: 1, zeroCopy: false, problems: [] }],
};

const capsRepo = openSqliteRepository(dir);
for (const [name, i] of [
  ["access-control", iface(["Allowed", "Denied"], [["allow_list", 8, 1]])],
  ["weak-classifier", iface(["Normal", "Suspicious", "Malicious"], [["flow_state", 16, 8]])],
  ["dpi", iface(["Clean", "Matched"], [["flow_state", 16, 8]])],
] as const)
  await capsRepo.insertNf({
    name,
    sourceDigest: "0".repeat(64),
    build: "stored-unbuilt",
    buildMessage: null,
    buildHash: `hash-of-${name}`,
    interface: i,
    artifacts: [],
    publishedAt: "t",
  });
const securityPlan = await planChainForPush(
  capsRepo,
  readFileSync(join(root, "chains/security.toml"), "utf8"),
  "chains/security.toml",
);
describe("graph against a device's probed capabilities", () => {
  const { graph } = securityPlan;
  const uuidOf = (instance: string) => graph.nfs.find((n) => n.instance === instance)!.uuid;

  it("fits a device that has everything", () => {
    expect(graphFitsDevice(graph, deviceCapabilities(probed, new Set([uuidOf("weak-classifier")])))).toEqual(
      [],
    );
  });

  it("names each thing a 4.14 device lacks: AF_XDP for the userland NF, bpf_loop, the LPM trie", () => {
    const problems = graphFitsDevice(
      graph,
      deviceCapabilities(smartSfp, new Set([uuidOf("weak-classifier")])),
    );
    expect(problems).toEqual([
      'NF "dpi" runs in userland, which needs AF_XDP; kernel 4.14.98 has no AF_XDP (XSKMAP)',
      'NF "weak-classifier" uses nf::repeat (the bpf_loop helper) in XDP; kernel 4.14.98 lacks bpf_loop (5.17 added it)',
      'map "access-control.allow_list" is a lpm_trie; kernel 4.14.98 does not create lpm_trie maps',
    ]);
  });

  it("an NF that uses nf::repeat only in userland needs no bpf_loop", () => {
    const problems = graphFitsDevice(
      graph,
      deviceCapabilities({ ...probed, bpfLoop: false }, new Set([uuidOf("dpi")])),
    );
    expect(problems).toEqual([]);
  });

  it("sizes map memory from the device's free memory and refuses an interface without XDP", () => {
    const small = {
      ...probed,
      availableMemoryBytes: 1 << 20,
      interfaces: [{ ...probed.interfaces[0]!, xdp: "none" as const }],
    };
    const problems = graphFitsDevice(graph, deviceCapabilities(small));
    expect(problems).toEqual([
      expect.stringMatching(/^the maps need about .* MiB; the device gives a chain's maps 512 KiB$/),
      "interface eth0 takes no XDP program (neither driver nor generic mode)",
    ]);
  });

  it("a device that reported nothing is checked against the static limits only", () => {
    expect(deviceCapabilities(undefined).probe).toBeUndefined();
  });
});

describe("the served assignment of a probed device", () => {
  it("refuses a chain whose XDP NF's published object calls bpf_loop to a device without it, and keeps it served what it runs", async () => {
    const data = mkdtempSync(join(tmpdir(), "galette-caps-store-"));
    try {
      const repo = openSqliteRepository(data);
      const store = new ArtifactStore(data);
      const loopObject = readFileSync(
        await compileBpfObject(join(import.meta.dirname, "fixtures/bpf-loop.c")),
      );
      const plainObject = readFileSync(
        await compileBpfObject(join(import.meta.dirname, "fixtures/no-loop.c")),
      );
      const publishWith = async (name: string, object: Buffer) => {
        const stored = await store.put(object);
        await repo.insertNf({
          name,
          sourceDigest: "0".repeat(64),
          build: "built",
          buildMessage: null,
          buildHash: `hash-of-${name}`,
          interface: iface(["Tx"], []),
          artifacts: [{ ...stored, kind: "bpf-object", nf: name }],
          publishedAt: "t",
        });
      };
      await publishWith("looper", loopObject);
      await publishWith("plain", plainObject);
      const push = async (nf: string) => {
        const toml = `[chain]\nname = "${nf}-chain"\n\n[functions.${nf}]\n\n[[links]]\nfrom = "rx"\nto = ["${nf}"]\n\n[[links]]\nfrom = "${nf}"\nto = ["tx"]\n`;
        const planned = await planChainForPush(repo, toml, `${nf}.toml`);
        const version = await repo.insertChainVersion({
          name: planned.name,
          toml,
          file: `${nf}.toml`,
          graph: planned.graph,
          warnings: [],
          createdAt: "t",
        });
        return (await repo.getChainVersion(planned.name, version))!;
      };
      const looper = await push("looper");
      const plain = await push("plain");
      const device = {
        name: "sfp-old",
        status: { installed: { chain: "plain-chain", version: 1 }, capabilities: smartSfp },
      } as unknown as DeviceRecord;
      expect(await chainRefusal(repo, store, device, looper)).toEqual({
        chain: "looper-chain",
        version: 1,
        reasons: [
          'NF "looper" uses nf::repeat (the bpf_loop helper) in XDP; kernel 4.14.98 lacks bpf_loop (5.17 added it)',
        ],
      });
      expect(await chainRefusal(repo, store, device, plain)).toBeNull();
      const assigned = { ...device, assignedChain: "looper-chain", assignedVersion: null } as DeviceRecord;
      const served = await servedDevice(repo, store, assigned);
      expect(served.refusal?.chain).toBe("looper-chain");
      expect(served.device).toMatchObject({ assignedChain: "plain-chain", assignedVersion: 1 });
      // the same device with bpf_loop takes it
      const modern = { ...assigned, status: { ...assigned.status, capabilities: probed } } as DeviceRecord;
      expect(await servedDevice(repo, store, modern)).toMatchObject({
        refusal: null,
        device: { assignedChain: "looper-chain" },
      });
      await repo.close();
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("--grace", () => {
  it("takes seconds, minutes, hours and 0; refuses anything else by name", () => {
    expect(parseGrace("30s")).toBe(30);
    expect(parseGrace("2m")).toBe(120);
    expect(parseGrace("45")).toBe(45);
    expect(parseGrace("0")).toBe(0);
    expect(parseGrace("1h")).toBe(3600);
    for (const bad of ["", "-5s", "1.5m", "30 seconds", "2h", "1e3"])
      expect(() => parseGrace(bad)).toThrow(
        `--grace ${JSON.stringify(bad)}: give a duration such as 30s, 2m or 0 (off), at most 60 minutes`,
      );
  });
});

describe("bpfHelperCalls", () => {
  it("finds bpf_loop in an object that calls it and not in one that does not", async () => {
    const withLoop = readFileSync(await compileBpfObject(join(import.meta.dirname, "fixtures/bpf-loop.c")));
    const without = readFileSync(await compileBpfObject(join(import.meta.dirname, "fixtures/no-loop.c")));
    expect(bpfHelperCalls(withLoop).has(BPF_FUNC_LOOP)).toBe(true);
    const plain = bpfHelperCalls(without);
    expect(plain.has(BPF_FUNC_LOOP)).toBe(false);
    expect(plain.has(5)).toBe(true); // bpf_ktime_get_ns
  }, 60_000);

  it("refuses what is not a BPF ELF object, naming why", async () => {
    expect(() =>
      bpfHelperCalls(Buffer.from("not an object at all, not even close to 64 bytes long........")),
    ).toThrow("not an ELF file");
    const obj = readFileSync(await compileBpfObject(join(import.meta.dirname, "fixtures/no-loop.c")));
    const x86 = Buffer.from(obj);
    x86.writeUInt16LE(62, 18);
    expect(() => bpfHelperCalls(x86)).toThrow("ELF machine 62 is not BPF");
    const truncated = obj.subarray(0, 200);
    expect(() => bpfHelperCalls(truncated)).toThrow("ELF section table out of bounds");
  }, 60_000);
});
