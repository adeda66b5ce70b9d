import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import type { BuiltChain } from "@galette/nf-build";
import { attachXdpPass, describeKernel, type VethPair } from "@galette/testkit";
import { detachXdp, queryXdp } from "@galette/xdp-native";
import { beforeAll, expect, it } from "vitest";
import { Dataplane } from "../src/kernel";
import { readRecord, recordPath } from "../src/record";
import { devicePins } from "../src/spec";
import { builtChainFile, compileTestBpf, install, quietLogger, vethFixture } from "./helpers";

describeKernel("installer: refusals leave the interface as it was", () => {
  const fixture = vethFixture("iref");
  const { state } = fixture;
  let veth: VethPair;
  let security: BuiltChain;
  const target = () => ({ iface: veth.ifB, netns: veth.nsB });
  const xdpTarget = () => ({ ifname: veth.ifB, netns: `/run/netns/${veth.nsB}` });

  beforeAll(async () => {
    veth = fixture.veth;
    security = await builtChainFile("security.toml");
  });

  it("a fresh install the verifier rejects removes everything it created", async () => {
    const artifacts = new Map(security.artifacts);
    artifacts.set("access-control", {
      ...artifacts.get("access-control")!,
      bpfObject: await compileTestBpf("rejected_nf.bpf.c"),
    });
    await expect(install({ ...security, artifacts }, target(), { stateDir: state.dir })).rejects.toThrow(
      /installing chain "security" on .*loading NF "access-control".*verifier log/s,
    );
    expect(queryXdp(xdpTarget()).progId).toBe(0);
    expect(existsSync(devicePins(target()).dir)).toBe(false);
    expect(readRecord(target(), state.dir)).toBeUndefined();
  });

  it("never attaches over a foreign XDP program", async () => {
    await attachXdpPass(veth.nsB, veth.ifB);
    try {
      await expect(install(security, target(), { stateDir: state.dir })).rejects.toThrow(
        /already has an XDP program attached \(id \d+\) that is not a Galette installation/,
      );
      expect(existsSync(devicePins(target()).dir)).toBe(false);
    } finally {
      detachXdp(xdpTarget());
    }
  });

  it("refuses leftover pins without a record, and adopting nothing", async () => {
    const pins = devicePins(target());
    mkdirSync(pins.dir, { recursive: true });
    try {
      await expect(install(security, target(), { stateDir: state.dir })).rejects.toThrow(
        /exists without an installation record: leftovers of a crashed install; remove them with `galette dataplane down --iface/,
      );
    } finally {
      expect(Dataplane.remove(target(), { stateDir: state.dir })).toBe(true);
    }
    await expect(Dataplane.adopt(target(), { stateDir: state.dir, logger: quietLogger() })).rejects.toThrow(
      /no installation record for .* nothing to adopt/,
    );
  });

  it("never adopts or removes an installation whose process is alive", async () => {
    const dp = await install(security, target(), { stateDir: state.dir });
    try {
      const file = recordPath(target(), state.dir);
      const rec = readRecord(target(), state.dir)!;
      writeFileSync(file, JSON.stringify({ ...rec, pid: 1 })); // init: alive, not us
      await expect(Dataplane.adopt(target(), { stateDir: state.dir, logger: quietLogger() })).rejects.toThrow(
        /is run by live process 1; stop it before adopting/,
      );
      expect(() => Dataplane.remove(target(), { stateDir: state.dir })).toThrow(/is run by live process 1/);
      writeFileSync(file, JSON.stringify(rec));
    } finally {
      dp.uninstall();
    }
    expect(queryXdp(xdpTarget()).progId).toBe(0);
  });
});
