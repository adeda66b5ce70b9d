import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { planChain } from "@galette/chain";
import type { BuiltChain } from "@galette/nf-build";
import {
  attachXdpPass,
  createVethPair,
  describeKernel,
  exchangeFrames,
  sleep,
  udpFrame,
  type VethPair,
} from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Dataplane } from "../src/kernel";
import { readRecord } from "../src/record";
import {
  builtChainFile,
  builtChainText,
  compileTestBpf,
  install,
  lpmKeyV4,
  repoRoot,
  stateDir,
} from "./helpers";

const securityText = readFileSync(path.join(repoRoot, "chains", "security.toml"), "utf8");

describeKernel("installer: live reconfiguration and failed installs", () => {
  let veth: VethPair;
  let built: BuiltChain;
  let dp: Dataplane;
  const state = stateDir();
  const crateCopies = mkdtempSync(path.join(tmpdir(), "galette-rebuild-"));
  /** A copy of an example NF with one more comment line: same code, a new build hash. */
  const copyCrate = (name: string): string => {
    const dir = path.join(crateCopies, name);
    cpSync(path.join(repoRoot, "nf-examples", name), dir, { recursive: true });
    const cargo = path.join(dir, "Cargo.toml");
    writeFileSync(
      cargo,
      readFileSync(cargo, "utf8").replace(
        'path = "../../packages/nf/nf"',
        `path = "${repoRoot}/packages/nf/nf"`,
      ),
    );
    const lib = path.join(dir, "src", "lib.rs");
    writeFileSync(lib, `${readFileSync(lib, "utf8")}\n// a new build for the installer test\n`);
    return dir;
  };
  const target = () => ({ iface: veth.ifB, netns: veth.nsB });
  const base = () => ({ dstMac: veth.macB, srcMac: veth.macA, dstIp: veth.ipB, srcIp: veth.ipA });
  /** IPv4, not TCP/UDP: access-control Allowed → weak-classifier Normal → XDP_TX */
  const normalFrame = (tag: string) => {
    const f = udpFrame({ ...base(), payload: Buffer.from(tag) });
    f[23] = 1;
    return f;
  };
  const counter = (nf: string, variant: string) =>
    dp.counters().find((c) => c.name === nf)!.variants[variant]!;

  beforeAll(async () => {
    built = await builtChainFile("security.toml");
    veth = await createVethPair("irc");
    await attachXdpPass(veth.nsA, veth.ifA);
    dp = await install(built, target(), { stateDir: state.dir, workers: { count: 2 } });
    dp.nfMap("access-control", "allow_list").update(lpmKeyV4(veth.ipA), Buffer.alloc(4));
  });
  afterAll(async () => {
    try {
      dp?.uninstall();
    } finally {
      if (veth) Dataplane.remove(target(), { stateDir: state.dir });
      await veth?.cleanup();
      state.cleanup();
      rmSync(crateCopies, { recursive: true, force: true });
    }
  });

  it("re-points weak-classifier, then replaces access-control and dpi with new builds under traffic: nothing lost or duplicated, in XDP or userland", async () => {
    // Prepared before the traffic starts: a re-linked chain and a new build of access-control.
    const repointed = securityText.replace('to = ["tx", "!dpi", "drop"]', 'to = ["tx", "!dpi", "!dpi"]');
    expect(repointed).not.toBe(securityText);
    const relinked = await builtChainText(repointed, "security-repointed.toml");
    const acCopy = copyCrate("access-control");
    const dpiCopy = copyCrate("dpi");
    const rebuilt = await builtChainText(
      repointed.replace(
        "[functions.access-control.maps]",
        `[functions.access-control]\npath = "${acCopy}"\n\n[functions.access-control.maps]`,
      ),
      "security-rebuilt.toml",
    );
    const newDpi = await builtChainText(
      repointed
        .replace(
          "[functions.access-control.maps]",
          `[functions.access-control]\npath = "${acCopy}"\n\n[functions.access-control.maps]`,
        )
        .replace("[functions.dpi]", `[functions.dpi]\npath = "${dpiCopy}"`),
      "security-new-dpi.toml",
    );
    expect(rebuilt.artifacts.get("access-control")!.hash).not.toBe(
      relinked.artifacts.get("access-control")!.hash,
    );

    const n = 1800;
    // Even frames stay in XDP (not TCP/UDP: Normal → XDP_TX); odd frames each open a new UDP
    // flow, so weak-classifier upcalls them and DPI (userland) transmits them.
    const frames = Array.from({ length: n }, (_, i) => {
      const tag = `t-cont-${String(i).padStart(5, "0")}`;
      return i % 2 === 0
        ? normalFrame(tag)
        : udpFrame({ ...base(), srcPort: 10_000 + i, payload: Buffer.from(tag) });
    });
    const workerTxBefore = dp.workerStats()!.totals.tx;
    const traffic = exchangeFrames(veth.nsA, veth.ifA, {
      send: frames,
      pps: 600,
      listenMs: 1000,
      match: Buffer.from("t-cont-"),
    });
    await sleep(600);
    const first = dp.replan(relinked.plan, relinked.artifacts);
    expect(first.reused).toEqual([dp.spec.instances.find((i) => i.name === "dpi")!.id]);
    await dp.reconfigure(first);
    await sleep(500);
    const second = dp.replan(rebuilt.plan, rebuilt.artifacts);
    expect(second.created).toHaveLength(1);
    expect(second.reused).toHaveLength(2);
    expect(second.maps.created).toEqual([]); // the allow-list survives the new build
    await dp.reconfigure(second);
    await sleep(500);
    // a new build of the userland NF: new library loaded beside the old one, then the swap
    const third = dp.replan(newDpi.plan, newDpi.artifacts);
    expect(third.reused).toEqual([]);
    expect(third.maps.created).toEqual([]); // flow_state is shared and unchanged
    await dp.reconfigure(third);
    const r = await traffic;

    const seqs = r.received.map((f) => f.subarray(42, 54).toString());
    const unique = new Set(seqs);
    expect(r.sent).toBe(n);
    expect({ received: seqs.length, unique: unique.size }).toEqual({ received: n, unique: n });
    expect(counter("access-control", "Allowed")).toBeGreaterThan(0);
    // the workers transmitted every odd frame (old dpi, then the new build)
    expect(dp.workerStats()!.totals.tx - workerTxBefore).toBe(n / 2);
    expect(counter("dpi", "Clean")).toBeGreaterThan(0);
    expect(
      readRecord(target(), state.dir)!
        .spec.instances.map((i) => i.id)
        .sort(),
    ).toEqual(dp.spec.instances.map((i) => i.id).sort());
    // retired instances left no pins behind
    const live = new Set(dp.spec.instances.map((i) => String(i.id)));
    for (const id of [...first.retired, ...second.retired, ...third.retired]) {
      if (!live.has(String(id)))
        expect(existsSync(path.join(dp.spec.pins.dir, "nf", String(id)))).toBe(false);
    }

    // the new links are in force: a flagged flow now goes back to DPI instead of being dropped in XDP
    const matchedBefore = counter("dpi", "Matched");
    const evil = udpFrame({ ...base(), srcPort: 3333, payload: Buffer.from("t-evil GALETTE-EVIL") });
    const e = await exchangeFrames(veth.nsA, veth.ifA, {
      send: [evil],
      repeat: 6,
      pps: 500,
      listenMs: 500,
      match: Buffer.from("t-evil"),
    });
    expect(e.received).toHaveLength(0);
    expect(counter("dpi", "Matched") - matchedBefore).toBe(6);
  });

  it("a plan with an NF the verifier rejects leaves the live chain forwarding; the error has the verifier log", async () => {
    const before = JSON.stringify(readRecord(target(), state.dir));
    const slotsBefore = dp.spec.instances.map((i) => i.id);
    const bad = await compileTestBpf("rejected_nf.bpf.c");
    const parsed = planChain(
      (await import("@galette/chain")).parseChain(securityText, "security.toml").chain!,
      {
        buildHashes: new Map([["access-control", "rejected-build"]]),
      },
    );
    const artifacts = new Map(built.artifacts);
    artifacts.set("access-control", {
      ...artifacts.get("access-control")!,
      hash: "rejected-build",
      bpfObject: bad,
    });
    const reconf = dp.replan(parsed, artifacts);
    const err = await dp.reconfigure(reconf).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/loading NF "access-control"/);
    expect(err!.message).toMatch(/verifier log/);
    expect(err!.message).toMatch(
      /invalid access to packet|R\d+ invalid mem access|offset is outside of the packet/,
    );
    expect(JSON.stringify(readRecord(target(), state.dir))).toBe(before);
    expect(dp.spec.instances.map((i) => i.id)).toEqual(slotsBefore);
    for (const id of reconf.created)
      expect(existsSync(path.join(dp.spec.pins.dir, "nf", String(id)))).toBe(false);

    const r = await exchangeFrames(veth.nsA, veth.ifA, {
      send: [normalFrame("t-after-fail")],
      repeat: 20,
      expect: 20,
      listenMs: 800,
      match: Buffer.from("t-after-fail"),
    });
    expect(r.received).toHaveLength(20);

    // a map conflict is refused before anything is touched
    const conflicting = new Map(built.artifacts);
    for (const nf of ["weak-classifier", "dpi"]) {
      const a = conflicting.get(nf)!;
      conflicting.set(nf, { ...a, maps: a.maps.map((m) => ({ ...m, valueSize: m.valueSize + 8 })) });
    }
    expect(() => dp.replan(built.plan, conflicting)).toThrow(
      /map "shared.flow_state" conflicts with the live installation/,
    );
  });
});
