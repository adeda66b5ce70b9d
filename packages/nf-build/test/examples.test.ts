/**
 * Every example through the real toolchain and kernel: builds for all targets, the verifier
 * accepts the XDP objects, the native libraries (x86_64 with real maps, the cross builds
 * under qemu-user with in-process maps) behave exactly like the XDP build run with
 * BPF_PROG_TEST_RUN on a shared corpus, bad NFs fail with explanations, and a warm rebuild
 * compiles nothing.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describeKernel, galette } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildNfs, compilerStats, NfBuildError, type NfBuildResult, stdStatus, TARGETS } from "../src";
import {
  corpus,
  EXAMPLES,
  exampleDir,
  type FrameResult,
  fixtureDir,
  harness,
  loadAll,
  MAP_ENTRIES,
  mapUpdate,
  parseHarnessOutput,
  QEMU,
  run,
  writeCorpus,
} from "./support";

/** armv7 builds of std NFs where Debian's libstd-rust-web-dev:armhf is installed (std-arm.test.ts covers its absence). */
const DPI_ARMV7: "armv7"[] = stdStatus("armv7").ok ? ["armv7"] : [];
const work = mkdtempSync(path.join(tmpdir(), "galette-nf-examples-"));
const corpusFile = path.join(work, "corpus.txt");
const pinDirs: string[] = [];
let results: Map<string, NfBuildResult>;

const artifact = (nf: string, target: string) => {
  const a = results.get(nf)?.artifacts.find((x) => x.target === target);
  if (!a) throw new Error(`no ${target} artifact for ${nf}`);
  return a.file;
};

/** Loads the NF's object, fills its maps, and maps variant i to verdict i + 1 for test runs. */
async function loadForTestRun(nf: string): Promise<string> {
  const dir = await loadAll(artifact(nf, "bpf"), nf.slice(0, 6));
  pinDirs.push(dir);
  for (const e of MAP_ENTRIES[nf] ?? []) await mapUpdate(`${dir}/maps/nf_map_${e.map}`, e.key, e.value);
  const variants = results.get(nf)?.manifest.variants ?? [];
  for (let i = 0; i < variants.length; i++)
    await mapUpdate(`${dir}/maps/galette_actions`, `0${i}000000`, `0${i + 1}00000000000000`);
  return dir;
}

function fakeMapSpecs(nf: string): string[] {
  const r = results.get(nf);
  return (r?.manifest.maps ?? []).map((m) => {
    const kind = m.type === "array" ? "array" : m.type === "lpm_trie" ? "lpm" : "hash";
    const entries = (MAP_ENTRIES[nf] ?? []).filter((e) => e.map === m.name).map((e) => `${e.key}=${e.value}`);
    return `fake:${kind}:${m.keySize}:${m.valueSize}${entries.length ? `:${entries.join(",")}` : ""}`;
  });
}

/** load-balance's choice is random by design: compare only what it does to the bytes. */
const comparable = (nf: string, r: FrameResult[]) =>
  nf === "load-balance" ? r.map((x) => ({ variant: 0, frame: x.frame })) : r;

describeKernel("nf-build: example NFs on the real toolchain and kernel", () => {
  beforeAll(async () => {
    await writeCorpus(corpusFile, corpus());
    const built = await buildNfs(
      EXAMPLES.map((n) => exampleDir(n)),
      { targets: [...TARGETS], skipUnavailable: true },
    );
    results = new Map(built.map((r) => [r.name, r]));
  });

  afterAll(() => {
    for (const d of pinDirs) rmSync(d, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it("builds every example for every target it supports, with a manifest", () => {
    for (const name of EXAMPLES) {
      const r = results.get(name);
      expect(r, name).toBeDefined();
      const targets = r?.artifacts.map((a) => a.target);
      if (name === "dpi") {
        // std: the host's, and Debian's multiarch std for aarch64 (armv7 where it is installed)
        expect(targets).toEqual(["x86_64", "aarch64", ...DPI_ARMV7]);
        expect(r?.skipped.map((s) => s.target)).toEqual([
          "bpf",
          ...(DPI_ARMV7.length ? [] : ["armv7"]),
          "riscv64",
        ]);
        expect(r?.skipped[0]?.reason).toBe("userland-only NF (uses std): no XDP build");
        expect(r?.skipped.at(-1)?.reason).toContain("Debian 12 has no riscv64 port");
      } else expect(targets).toEqual([...TARGETS]);
      expect(r?.manifest.hash).toBe(r?.hash);
      for (const a of r?.artifacts ?? []) {
        expect(a.size).toBeGreaterThan(0);
        expect(a.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(path.basename(a.file)).toBe(
          a.target === "bpf" ? `${r?.hash}.bpf.o` : `${r?.hash}.${a.triple}.so`,
        );
      }
    }
    expect(results.get("weak-classifier")?.manifest.variants).toEqual(["Normal", "Suspicious", "Malicious"]);
    expect(results.get("access-control")?.manifest.maps).toEqual([
      {
        name: "allow_list",
        type: "lpm_trie",
        maxEntries: 1024,
        keyType: "LpmKeyV4",
        valueType: "u32",
        keySize: 8,
        valueSize: 4,
      },
    ]);
  });

  it("every XDP object passes the kernel verifier", async () => {
    for (const name of EXAMPLES) {
      if (name === "dpi") continue;
      const dir = await loadAll(artifact(name, "bpf"), "verify");
      try {
        const prog = JSON.parse(
          (await run("bpftool", ["-j", "prog", "show", "pinned", `${dir}/galette_nf`])).stdout,
        );
        expect(prog.type, name).toBe("xdp");
        expect(prog.name, name).toBe("galette_nf");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it("the x86_64 library gives the same variants and bytes as the XDP build (BPF_PROG_TEST_RUN)", async () => {
    const real = await harness("real");
    for (const name of EXAMPLES) {
      if (name === "dpi") continue;
      const xdpDir = await loadForTestRun(name);
      const xdp = parseHarnessOutput((await run(real, ["xdp", `${xdpDir}/galette_nf`, corpusFile])).stdout);
      expect(xdp).toHaveLength(corpus().length);
      // a second copy of the maps, filled the same way, for the native run
      const natDir = await loadForTestRun(name);
      const mapArgs = (results.get(name)?.manifest.maps ?? []).map(
        (m) => `pin:${natDir}/maps/nf_map_${m.name}`,
      );
      const native = parseHarnessOutput(
        (await run(real, ["so", artifact(name, "x86_64"), corpusFile, ...mapArgs])).stdout,
      );
      expect(comparable(name, native), name).toEqual(comparable(name, xdp));
    }
  });

  it("the NFs do what they say on the corpus", async () => {
    const real = await harness("real");
    const variantsOf = async (name: string) => {
      const dir = await loadForTestRun(name);
      const maps = (results.get(name)?.manifest.maps ?? []).map((m) => `pin:${dir}/maps/nf_map_${m.name}`);
      return parseHarnessOutput(
        (await run(real, ["so", artifact(name, "x86_64"), corpusFile, ...maps])).stdout,
      );
    };
    const frames = corpus();
    // access-control: 10.0.0.0/8 sources allowed (0), others denied (1)
    expect((await variantsOf("access-control")).map((r) => r.variant)).toEqual([
      0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1,
    ]);
    // weak-classifier: a flow without a dpi verdict stays Suspicious (1), however many packets
    // pass (fail-closed: nothing here plays dpi's part)
    expect((await variantsOf("weak-classifier")).slice(0, 6).map((r) => r.variant)).toEqual([
      1, 1, 1, 1, 1, 1,
    ]);
    // decrement-ttl: frame 7 has TTL 1 → Expired; frame 8 TTL 2 → 1
    const ttl = await variantsOf("decrement-ttl");
    expect(ttl[6]?.variant).toBe(1);
    expect(Buffer.from(ttl[7]?.frame ?? "", "hex")[22]).toBe(1);
    // dpi (x86_64 only): the signature frames match
    const dpi = await run(real, [
      "so",
      artifact("dpi", "x86_64"),
      corpusFile,
      `pin:${await loadForTestRun("weak-classifier")}/maps/nf_map_flow_state`,
    ]);
    expect(parseHarnessOutput(dpi.stdout).map((r) => r.variant)).toEqual([
      0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0,
    ]);
    // macswap: MACs swapped
    const swapped = Buffer.from((await variantsOf("macswap"))[0]?.frame ?? "", "hex");
    expect(swapped.subarray(0, 6)).toEqual(frames[0]?.subarray(6, 12));
  });

  it("the aarch64, armv7 and riscv64 libraries behave like x86_64 under qemu-user", async () => {
    const x86 = await harness("x86_64");
    for (const name of EXAMPLES) {
      const specs = fakeMapSpecs(name);
      const expected = parseHarnessOutput(
        (await run(x86, ["so", artifact(name, "x86_64"), corpusFile, ...specs])).stdout,
      );
      expect(expected).toHaveLength(corpus().length);
      // dpi (std) has no riscv64 build: Debian 12 has no riscv64 port
      const arches = name === "dpi" ? ["aarch64", ...DPI_ARMV7] : ["aarch64", "armv7", "riscv64"];
      for (const arch of arches as ("aarch64" | "armv7" | "riscv64")[]) {
        const h = await harness(arch);
        const [qemu, ...qemuArgs] = QEMU[arch] as string[];
        const out = await run(qemu as string, [
          ...qemuArgs,
          h,
          "so",
          artifact(name, arch),
          corpusFile,
          ...specs,
        ]);
        expect(comparable(name, parseHarnessOutput(out.stdout)), `${name} on ${arch}`).toEqual(
          comparable(name, expected),
        );
      }
    }
  });

  it("a warm rebuild of all examples runs no compiler", async () => {
    const before = compilerStats.invocations;
    const again = await buildNfs(
      EXAMPLES.map((n) => exampleDir(n)),
      { targets: [...TARGETS], skipUnavailable: true },
    );
    expect(compilerStats.invocations - before).toBe(0);
    expect(again.flatMap((r) => r.artifacts).every((a) => a.cached)).toBe(true);
    expect(again.map((r) => r.hash)).toEqual(EXAMPLES.map((n) => results.get(n)?.hash));
  });

  it("refuses an NF that indexes the packet unchecked, pointing at the line", async () => {
    const err = await buildNfs([fixtureDir("unchecked-index")], { targets: ["bpf"] }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NfBuildError);
    const msg = (err as Error).message;
    expect(msg).toContain(
      "cannot run in XDP: its compiled code calls functions that do not exist in the kernel",
    );
    expect(msg).toContain(
      "core::panicking::panic_bounds_check: indexing a slice or array with an index Rust cannot prove is in bounds",
    );
    expect(msg).toMatch(/unchecked-index\/src\/lib\.rs:13:9: calls core::panicking::panic_bounds_check/);
    expect(msg).toContain("pkt.slice_from(off, n)");
  });

  it("shows rustc's errors at the author's file:line, once for all targets", async () => {
    const err = await buildNfs([fixtureDir("type-error")], { targets: ["bpf", "x86_64"] }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NfBuildError);
    const msg = (err as Error).message;
    expect(msg).toContain("NF type-error does not compile for bpf, x86_64:");
    expect(msg).toContain("error[E0308]: mismatched types");
    expect(msg).toMatch(/--> .*fixtures\/bad-nfs\/type-error\/src\/lib\.rs:10:21/);
    expect(msg).not.toContain("glue");
  });

  it("`galette nf build --all-targets --json` lists five artifacts for macswap; errors exit 1 without a stack trace", async () => {
    const out = await galette(["nf", "build", "nf-examples/macswap", "--all-targets", "--json"]);
    expect(out.code, out.stderr).toBe(0);
    const json = JSON.parse(out.stdout) as {
      nfs: { name: string; artifacts: { target: string; file: string }[] }[];
    };
    expect(json.nfs).toHaveLength(1);
    expect(json.nfs[0]?.name).toBe("macswap");
    expect(json.nfs[0]?.artifacts.map((a) => a.target)).toEqual([...TARGETS]);
    const bad = await galette(["nf", "build", fixtureDir("type-error"), "--target", "x86_64"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("galette nf build: NF type-error does not compile for x86_64:");
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    const badTarget = await galette(["nf", "build", "nf-examples/macswap", "--target", "mips"]);
    expect(badTarget.code).toBe(1);
    expect(badTarget.stderr).toContain('galette nf build: unknown target "mips"');
    // --sandbox: as the controller builds an upload; a host file the crate names does not exist
    const host = fixtureDir("reads-host-file");
    const unsandboxed = await galette(["nf", "build", host, "--target", "bpf"]);
    expect(unsandboxed.code, unsandboxed.stderr).toBe(0);
    const sandboxed = await galette(["nf", "build", host, "--target", "bpf", "--sandbox"]);
    expect(sandboxed.code).toBe(1);
    expect(sandboxed.stderr).toContain("couldn't read `/etc/passwd`: No such file or directory");
    expect(sandboxed.stderr).toContain("--> reads-host-file/src/lib.rs:6:");
    expect(sandboxed.stderr + sandboxed.stdout).not.toContain("root:x:0:0");
  });
});
