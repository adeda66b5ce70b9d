/**
 * What `galette dataplane up` (and the agent's xdpMode auto) make of a probe: the refusals
 * of a plan the kernel or a port cannot run, and the XDP mode for a set of ports. The probe
 * is faked here (a kernel without AF_XDP cannot be had on this machine); the real probe is
 * exercised by probe.e2e and dataplane-probe.e2e.
 */
import { describe, expect, it } from "vitest";
import { type CapabilityProbe, type ProbedPlan, probeRefusals, xdpModeFor } from "../src/probe";

const probe = (over: Partial<CapabilityProbe> = {}): CapabilityProbe => ({
  probedAt: "2026-01-01T00:00:00.000Z",
  kernelRelease: "6.18.0-test",
  kernel: { major: 6, minor: 18 },
  cpus: 2,
  memoryBytes: 1 << 30,
  availableMemoryBytes: 1 << 29,
  btf: true,
  bpfLoop: true,
  tailCalls: true,
  afXdp: true,
  mapTypes: ["hash_map", "array", "lpm_trie", "percpu_array", "percpu_hash", "lru_hash"],
  interfaces: [
    { name: "eth0", xdp: "native", rxQueues: 4, zeroCopy: null, problems: [] },
    { name: "eth1", xdp: "generic", rxQueues: 1, zeroCopy: false, problems: [] },
  ],
  problems: [],
  ...over,
});

const plan: ProbedPlan = {
  nfs: [
    {
      name: "access-control",
      xdp: true,
      userland: false,
      maps: [{ map: "access-control.allow_list", type: "lpm_trie" }],
    },
    { name: "dpi", xdp: false, userland: true, maps: [{ map: "flow_state", type: "hash_map" }] },
  ],
};

describe("probeRefusals", () => {
  it("lets a chain the kernel and ports can run through", () => {
    expect(probeRefusals(probe(), plan, ["eth0", "eth1"])).toEqual([]);
  });

  it("names the userland NFs on a kernel without AF_XDP (the older Smart SFP's 4.14)", () => {
    const reasons = probeRefusals(probe({ afXdp: false, kernelRelease: "4.14.98" }), plan, ["eth0"]);
    expect(reasons).toEqual([
      'NF "dpi" runs in userland, which needs AF_XDP; kernel 4.14.98 has no AF_XDP (XSKMAP)',
    ]);
  });

  it("names tail calls, a missing map type and a port that takes no XDP, all at once", () => {
    const reasons = probeRefusals(
      probe({
        tailCalls: false,
        mapTypes: ["hash_map", "array"],
        interfaces: [
          {
            name: "gbe0",
            xdp: "none",
            rxQueues: 1,
            zeroCopy: false,
            problems: ["XDP attach probe: EOPNOTSUPP"],
          },
        ],
      }),
      plan,
      ["gbe0"],
    );
    expect(reasons).toEqual([
      "the chain's XDP NFs are entered by tail calls; kernel 6.18.0-test cannot create a PROG_ARRAY",
      'map "access-control.allow_list" is a lpm_trie; kernel 6.18.0-test does not create lpm_trie maps',
      "interface gbe0 takes no XDP program (neither driver nor generic mode): XDP attach probe: EOPNOTSUPP",
    ]);
  });
});

describe("xdpModeFor", () => {
  it("native when every port took driver mode, generic when one only took generic", () => {
    expect(xdpModeFor(probe(), ["eth0"])).toBe("native");
    expect(xdpModeFor(probe(), ["eth0", "eth1"])).toBe("generic");
    expect(xdpModeFor(probe(), ["eth1"])).toBe("generic");
    // a port the probe did not cover: the attach says what is wrong
    expect(xdpModeFor(probe(), ["eth9"])).toBe("native");
  });
});
