/**
 * `galette dataplane up` probes the kernel and the ports before installing, as the agent
 * does: with --xdp-mode auto (the default) a pair of ports where one only takes generic
 * XDP (an ifb) is installed in generic mode on both; a port that takes no XDP program (it
 * does not exist) is refused with the reason, before anything is installed.
 */
import { createVethPair, describeKernel, galette, nsRun, type VethPair } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Dataplane } from "../src/kernel";
import { builtChainFile, stateDir } from "./helpers";

describeKernel("galette dataplane up: capability probe", () => {
  let veth: VethPair;
  const state = stateDir();
  beforeAll(async () => {
    veth = await createVethPair("dpp");
    await nsRun(veth.nsB, "ip", ["link", "add", "ifb0", "type", "ifb"]);
    await nsRun(veth.nsB, "ip", ["link", "set", "ifb0", "up"]);
    await builtChainFile("bridge.toml"); // warm the build cache
  });
  afterAll(async () => {
    if (veth) Dataplane.remove({ iface: veth.ifB, peer: "ifb0", netns: veth.nsB }, { stateDir: state.dir });
    await veth?.cleanup();
    state.cleanup();
  });

  const up = (args: string[]) =>
    galette(["dataplane", "up", "--netns", veth.nsB, "--state-dir", state.dir, "--duration", "1", ...args], {
      env: { GALETTE_LOG: "info" },
      timeoutMs: 180_000,
    });

  it("--xdp-mode auto: generic on both ports when one of them only takes generic XDP", async () => {
    const r = await up(["--ports", `${veth.ifB},ifb0`, "chains/bridge.toml"]);
    expect(r.stderr).not.toMatch(/"level":50/);
    expect(r.code).toBe(0);
    const probed = r.stderr
      .split("\n")
      .filter((l) => l.includes("capabilities probed"))
      .map((l) => JSON.parse(l) as { xdpMode: string; requested: string; ports: string[] });
    expect(probed).toEqual([
      expect.objectContaining({ xdpMode: "generic", requested: "auto", ports: [veth.ifB, "ifb0"] }),
    ]);
    const installed = r.stderr
      .split("\n")
      .filter((l) => l.includes('"chain installed"'))
      .map((l) => JSON.parse(l) as { mode: string });
    expect(installed).toEqual([expect.objectContaining({ mode: "skb" })]);
    expect(r.stdout).toContain('chain "bridge"');
  });

  it("refuses a port that takes no XDP program, naming it, and installs nothing", async () => {
    const r = await up(["--ports", `${veth.ifB},nosuch0`, "chains/bridge.toml"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`chain "bridge" cannot run on ${veth.ifB},nosuch0 here:`);
    expect(r.stderr).toMatch(/interface nosuch0 takes no XDP program \(neither driver nor generic mode\)/);
    const link = await nsRun(veth.nsB, "ip", ["link", "show", "dev", veth.ifB]);
    expect(link.stdout).not.toMatch(/xdp/);
  });

  it("refuses an unknown --xdp-mode and --skb with --xdp-mode native", async () => {
    const bad = await up(["--iface", veth.ifB, "--xdp-mode", "turbo", "chains/bridge.toml"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--xdp-mode must be auto, native or generic, got "turbo"');
    const both = await up(["--iface", veth.ifB, "--skb", "--xdp-mode", "native", "chains/bridge.toml"]);
    expect(both.code).not.toBe(0);
    expect(both.stderr).toContain("--skb means --xdp-mode generic; it contradicts --xdp-mode native");
  });
});
