/**
 * The capability probe on this kernel: map types by creating them, XDP modes by attaching.
 * A veth takes native XDP; an ifb interface has no driver XDP, so the probe says
 * generic-only — and a probe never disturbs an interface that already runs a program.
 */
import { createVethPair, describeKernel, nsRun, run, uniqueSuffix, type VethPair } from "@galette/testkit";
import { attachXdp, BpfObject, possibleCpus, queryXdp, rootProgramObjectPath } from "@galette/xdp-native";
import { afterAll, beforeAll, expect, it } from "vitest";
import { probeCapabilities } from "../src/probe";

describeKernel("capability probe", () => {
  let veth: VethPair;
  const ifbNs = `gal-prb-${uniqueSuffix()}`;
  beforeAll(async () => {
    veth = await createVethPair("prb");
    await run("ip", ["netns", "add", ifbNs]);
    await nsRun(ifbNs, "ip", ["link", "add", "ifb0", "type", "ifb"]);
    await nsRun(ifbNs, "ip", ["link", "set", "ifb0", "up"]);
    await nsRun(ifbNs, "ip", [
      "link",
      "add",
      "mq0",
      "numrxqueues",
      "4",
      "numtxqueues",
      "4",
      "type",
      "veth",
      "peer",
      "name",
      "mq1",
    ]);
  });
  afterAll(async () => {
    await veth?.cleanup();
    await run("ip", ["netns", "del", ifbNs]).catch(() => undefined);
  });

  it("reports this kernel: BTF, bpf_loop, tail calls, AF_XDP, every NF map type", () => {
    const p = probeCapabilities();
    expect(p.kernel.major).toBeGreaterThanOrEqual(6);
    expect(p.btf).toBe(true);
    expect(p.bpfLoop).toBe(true);
    expect(p.tailCalls).toBe(true);
    expect(p.afXdp).toBe(true);
    expect(p.mapTypes).toEqual(["hash_map", "array", "lpm_trie", "percpu_array", "percpu_hash", "lru_hash"]);
    expect(p.memoryBytes).toBeGreaterThan(0);
    expect(p.problems).toEqual([]);
  });

  it("veth takes native XDP; zero-copy is not possible on veth; the probe leaves nothing attached", () => {
    // veth gets one RX queue per possible CPU unless told otherwise
    const p = probeCapabilities({ interfaces: [veth.ifB], netns: veth.nsB });
    expect(p.interfaces).toEqual([
      { name: veth.ifB, xdp: "native", rxQueues: possibleCpus(), zeroCopy: false, problems: [] },
    ]);
    expect(queryXdp({ ifname: veth.ifB, netns: `/run/netns/${veth.nsB}` }).progId).toBe(0);
  });

  it("an ifb interface (no driver XDP) takes only generic XDP", () => {
    const p = probeCapabilities({ interfaces: ["ifb0"], netns: ifbNs });
    expect(p.interfaces[0]).toMatchObject({ name: "ifb0", xdp: "generic", zeroCopy: false });
    expect(queryXdp({ ifname: "ifb0", netns: `/run/netns/${ifbNs}` }).progId).toBe(0);
  });

  it("an interface already running a program is not touched: its mode is reported", () => {
    const obj = BpfObject.load(rootProgramObjectPath());
    try {
      const target = { ifname: veth.ifA, netns: `/run/netns/${veth.nsA}` };
      attachXdp(target, obj.programFd("galette_root"), { mode: "skb" });
      const before = queryXdp(target).skbProgId;
      const p = probeCapabilities({ interfaces: [veth.ifA], netns: veth.nsA });
      expect(p.interfaces[0]?.xdp).toBe("generic");
      expect(p.interfaces[0]?.problems[0]).toMatch(/generic mode: driver mode not tried/);
      expect(queryXdp(target).skbProgId).toBe(before);
    } finally {
      obj.close();
    }
  });

  it("counts RX queues", () => {
    const p = probeCapabilities({ interfaces: ["mq0"], netns: ifbNs });
    expect(p.interfaces[0]).toMatchObject({ name: "mq0", xdp: "native", rxQueues: 4 });
  });

  it("a missing interface is a problem named in the report, not a throw", () => {
    const p = probeCapabilities({ interfaces: ["nosuch0"], netns: ifbNs });
    expect(p.interfaces[0]?.xdp).toBe("none");
    expect(p.interfaces[0]?.problems.join("; ")).toMatch(/nosuch0/);
  });
});
