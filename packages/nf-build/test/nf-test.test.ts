/**
 * `galette nf test` as an author runs it (the CLI as a child process, the real toolchain and
 * kernel): both builds agree on macswap, a fixture whose builds differ fails naming the
 * frames, expectations and initial maps work, and bad input is refused clearly. Also the
 * author diagnostics: each construct BPF cannot run, located at the author's line.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createVethPair, describeKernel, galette } from "@galette/testkit";
import { ethFrame, udpFrame } from "@galette/testkit/frames";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildChain, buildNfs, loadChainOrThrow, NfBuildError, type NfTestResult, writePcap } from "../src";
import { exampleDir, fixtureDir, here, repoRoot } from "./support";

const work = mkdtempSync(path.join(tmpdir(), "galette-nf-test-"));
const file = (name: string) => path.join(work, name);

const mac = { dstMac: "02:00:00:00:00:0b", srcMac: "02:00:00:00:00:0a" };
const frames = [
  udpFrame({
    ...mac,
    srcIp: "10.0.0.1",
    dstIp: "10.9.8.7",
    srcPort: 1000,
    dstPort: 53,
    payload: Buffer.from("a"),
  }),
  ethFrame({ dst: mac.dstMac, src: mac.srcMac, ethertype: 0x86dd, payload: Buffer.alloc(40, 2) }),
  udpFrame({ ...mac, srcIp: "192.168.1.1", dstIp: "10.9.8.7", payload: Buffer.from("b") }),
];

/** `galette nf test NF --pcap WORK/PCAP …` */
const nfTest = (nf: string, pcap: string, ...rest: string[]) =>
  galette(["nf", "test", nf, "--pcap", file(pcap), ...rest]);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describeKernel("galette nf test", () => {
  beforeAll(async () => {
    await writePcap(file("in.pcap"), frames);
  });

  it("passes on macswap: both builds swap the MACs, verdict Tx on every frame", async () => {
    const r = await nfTest("nf-examples/macswap", "in.pcap", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as NfTestResult;
    expect(out.passed).toBe(true);
    expect(out.frames.map((f) => f.xdp.verdict)).toEqual(["Tx", "Tx", "Tx"]);
    const first = Buffer.from(out.frames[0]?.native.bytes ?? "", "hex");
    expect(first.subarray(0, 6)).toEqual(frames[0]?.subarray(6, 12));
    const text = await nfTest("nf-examples/macswap", "in.pcap");
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain("frame 3: Tx");
    expect(text.stdout).toContain("XDP and x86_64 builds agree");
  });

  it("fails on an NF whose XDP and native builds differ, naming the frame", async () => {
    const r = await nfTest(fixtureDir("differs-by-target"), "in.pcap");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("frame 2: verdict: XDP Drop, x86_64 Tx");
    expect(r.stderr).not.toMatch(/frame [13]:/);
  });

  it("checks an expectation written by --out, and names the frame that departs from it", async () => {
    const w = await nfTest("nf-examples/macswap", "in.pcap", "--out", file("out.pcap"));
    expect(w.code, w.stderr).toBe(0);
    const ok = await nfTest("nf-examples/macswap", "in.pcap", "--expect", file("out.pcap"));
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("match the expectation");
    // the input itself is not what macswap outputs: the MACs differ (first at byte 5)
    const bad = await nfTest("nf-examples/macswap", "in.pcap", "--expect", file("in.pcap"));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("frame 1: expected: output differs from the expected frame at byte 5");
    await writePcap(file("short.pcap"), frames.slice(0, 2));
    const count = await nfTest("nf-examples/macswap", "in.pcap", "--expect", file("short.pcap"));
    expect(count.code).toBe(1);
    expect(count.stderr).toContain("2 frames");
  });

  it("starts from the maps file's entries (access-control's allow list)", async () => {
    writeFileSync(file("maps.toml"), '# 10.0.0.0/8 allowed\nallow_list = ["080000000a000000:01000000"]\n');
    const r = await nfTest(exampleDir("access-control"), "in.pcap", "--maps", file("maps.toml"), "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as NfTestResult;
    expect(out.frames.map((f) => f.native.verdict)).toEqual(["Allowed", "Denied", "Denied"]);
    writeFileSync(file("maps.json"), JSON.stringify({ allow_list: ["080000000a000000:01000000"] }));
    const json = await nfTest(exampleDir("access-control"), "in.pcap", "--maps", file("maps.json"));
    expect(json.code, json.stderr).toBe(0);
  });

  it("refuses bad maps files and captures with a clear error", async () => {
    const cases: Array<[string, string, RegExp]> = [
      ["unknown-map.toml", 'nope = ["00:00"]\n', /has no map "nope" \(its maps: allow_list\)/],
      ["wrong-size.toml", 'allow_list = ["0800:01000000"]\n', /key 2 B and value 4 B; the map's are 8 B/],
      ["odd-hex.toml", 'allow_list = ["080:01"]\n', /expected "KEYHEX:VALUEHEX"/],
      ["not-array.toml", 'allow_list = "080000000a000000:01000000"\n', /must be an array/],
      ["broken.toml", "allow_list = [\n", /broken\.toml/],
    ];
    for (const [name, text, want] of cases) {
      writeFileSync(file(name), text);
      const r = await nfTest(exampleDir("access-control"), "in.pcap", "--maps", file(name));
      expect(r.code, name).toBe(1);
      expect(r.stderr, name).toMatch(want);
      expect(r.stderr, name).not.toMatch(/\n\s+at /); // no stack trace
    }
    writeFileSync(file("junk.pcap"), "not a capture");
    const junk = await nfTest("nf-examples/macswap", "junk.pcap");
    expect(junk.code).toBe(1);
    expect(junk.stderr).toContain("not a pcap or pcapng capture");
    const ng = Buffer.alloc(28);
    ng.writeUInt32BE(0x0a0d0d0a, 0);
    writeFileSync(file("x.pcapng"), ng);
    const pcapng = await nfTest("nf-examples/macswap", "x.pcapng");
    expect(pcapng.code).toBe(1);
    expect(pcapng.stderr).toContain("pcapng is not supported");
    await writePcap(file("tiny.pcap"), [frames[0] as Buffer, Buffer.alloc(10, 1)]);
    const tiny = await nfTest("nf-examples/macswap", "tiny.pcap");
    expect(tiny.code).toBe(1);
    expect(tiny.stderr).toContain("frame 2 is 10 bytes");
    const missing = await nfTest("nf-examples/macswap", "missing.pcap");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("cannot read the capture");
  });

  it("a loop the verifier cannot bound: the author's line and the verifier's last lines", async () => {
    const r = await nfTest(fixtureDir("unbounded-loop"), "in.pcap");
    expect(r.code).toBe(1);
    // a line of the loop (lib.rs 15-18): which one the verifier gives up on depends on the
    // code generated around the NF, not on the author's
    expect(r.stderr).toMatch(
      /unbounded-loop\/src\/lib\.rs:1[5-8]: error: a program too complex for the verifier/,
    );
    expect(r.stderr).toContain("hint: bound every loop");
    expect(r.stderr).toContain("The verifier's last lines:");
    expect(r.stderr).toMatch(/too complex/);
    // nf build --verify: the same verdict at build time; a good NF passes
    const built = await galette(["nf", "build", fixtureDir("unbounded-loop"), "--target", "bpf", "--verify"]);
    expect(built.code).toBe(1);
    expect(built.stderr).toMatch(
      /unbounded-loop\/src\/lib\.rs:1[5-8]: error: a program too complex for the verifier/,
    );
    const good = await galette(["nf", "build", "nf-examples/macswap", "--target", "bpf", "--verify"]);
    expect(good.code, good.stderr).toBe(0);
  });
});

describe("author diagnostics: what BPF cannot run, at the author's line", () => {
  const fails = async (fixture: string) => {
    const err = await buildNfs([fixtureDir(fixture)], { targets: ["bpf"] }).catch((e: unknown) => e);
    expect(err, fixture).toBeInstanceOf(NfBuildError);
    return (err as Error).message;
  };

  it("a saturating 64-bit multiply (128-bit arithmetic, __multi3) in a token bucket", async () => {
    const msg = await fails("token-bucket");
    expect(msg).toMatch(/token-bucket\/src\/lib\.rs:22:\d+: error: 128-bit arithmetic \(calls __multi3\)/);
    expect(msg).toContain("hint: bound the operands");
    expect(msg).not.toContain("uint_macros.rs");
  });

  it("floating point", async () => {
    const msg = await fails("uses-float");
    expect(msg).toMatch(/uses-float\/src\/lib\.rs:11:\d+: error: floating point/);
    expect(msg).toMatch(/uses-float\/src\/lib\.rs:12:\d+: error: floating point/);
    expect(msg).toContain("hint: use integer or fixed-point arithmetic");
  });

  it("recursion", async () => {
    const msg = await fails("recursion");
    expect(msg).toMatch(/recursion\/src\/lib\.rs:16:\d+: error: recursion \(recursion::weight\)/);
    expect(msg).toContain("hint: rewrite it as a loop");
  });

  it("more than 512 bytes of stack", async () => {
    const msg = await fails("big-stack");
    expect(msg).toMatch(/big-stack\/src\/lib\.rs:11:\d+: error: more than 512 bytes of stack/);
    expect(msg).not.toContain("shim.c");
    expect(msg).toContain("hint: keep large buffers in a map");
  });
});

describeKernel("a chain may omit an owned map that #[map(type, size)] describes", () => {
  const limiterChain = () => {
    const chain = file("limiter.toml");
    writeFileSync(
      chain,
      [
        "[functions.limiter]",
        `path = ${JSON.stringify(path.join(here, "fixtures", "rate-limiter"))}`,
        "[[links]]",
        'from = "rx"',
        'to = ["limiter"]',
        "[[links]]",
        'from = "limiter"',
        'to = ["tx", "drop"]',
        "",
      ].join("\n"),
    );
    return chain;
  };

  it("validates, plans from the attribute (lru_hash, 4096), and installs on a veth", async () => {
    const chain = limiterChain();
    const validate = await galette(["chain", "validate", chain]);
    expect(validate.code, validate.stdout + validate.stderr).toBe(0);
    const shown = await galette(["chain", "plan", chain, "--json"]);
    expect(shown.code, shown.stderr).toBe(0);
    expect((JSON.parse(shown.stdout) as { maps: unknown[] }).maps).toEqual([
      expect.objectContaining({ id: "limiter.buckets", type: "lru_hash", maxEntries: 4096 }),
    ]);
    const built = await buildChain(await loadChainOrThrow(chain), { baseDir: repoRoot });
    const planned = built.plan.nfs.find((n) => n.name === "limiter")?.maps;
    expect(planned?.map((m) => [m.name, m.type, m.maxEntries])).toEqual([["buckets", "lru_hash", 4096]]);
    expect(built.artifacts.get("limiter")?.maps).toMatchObject([
      { name: "buckets", type: "lru_hash", maxEntries: 4096 },
    ]);
    const veth = await createVethPair("nfmap");
    try {
      const up = await galette([
        "dataplane",
        "up",
        chain,
        "--iface",
        veth.ifB,
        "--netns",
        veth.nsB,
        "--skb",
        "--duration",
        "1",
        "--state-dir",
        file("state"),
      ]);
      expect(up.code, up.stderr).toBe(0);
    } finally {
      await veth.cleanup();
    }
  });
});
