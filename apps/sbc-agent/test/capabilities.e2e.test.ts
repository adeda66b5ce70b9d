/**
 * Capabilities steer placement, end to end with a real controller and probed agents.
 * One device's agent is stopped and its report is replayed with AF_XDP missing and an
 * older kernel (as the older Smart SFP on 4.14 reports): a chain with a userland NF is
 * refused for it with the reason, it keeps its chain, and once its real agent reports
 * again the chain goes in. Another device's interface is an ifb (no driver XDP): its
 * probe says generic and the agent installs in generic mode without being told.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { BUNDLE_FILES, type DeviceStatusReport, PROTOCOL_VERSION } from "@galette/protocol";
import { describeKernel, nsRun } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { DeviceClient } from "../src/client";
import { Fleet, repoRoot, waitFor } from "./fleet";

const userlandToml = `[chain]
name = "macswap-user"

[functions.macswap]
disable_xdp = true

[functions.macswap.maps]
counters = { type = "array", size = 1 }

[[links]]
from = "rx"
to = ["macswap"]

[[links]]
from = "macswap"
to = ["tx"]
`;

describeKernel("capabilities steer placement", () => {
  const fleet = new Fleet();
  const chainDir = mkdtempSync(path.join(tmpdir(), "galette-cap-"));
  const userlandFile = path.join(chainDir, "macswap-user.toml");

  beforeAll(async () => {
    writeFileSync(userlandFile, userlandToml);
    await fleet.start({
      devices: [
        { name: "cap-1", websocket: true, pollIntervalSeconds: 2 },
        {
          name: "cap-ifb",
          websocket: true,
          pollIntervalSeconds: 2,
          iface: {
            name: "ifb0",
            setup: async (ns) => {
              await nsRun(ns, "ip", ["link", "add", "ifb0", "type", "ifb"]);
              await nsRun(ns, "ip", ["link", "set", "ifb0", "up"]);
            },
          },
        },
      ],
    });
    await fleet.publish("macswap");
    await fleet.push("chains/macswap.toml");
    await fleet.push("macswap-user.toml", userlandToml);
  }, 600_000);

  afterAll(() => fleet.cleanup());

  it("reports what the probe found: device list --json and device show", async () => {
    const d = await waitFor(
      "cap-1 to report capabilities",
      60_000,
      async () => (await fleet.device("cap-1")).capabilities ?? undefined,
    );
    expect(d).toMatchObject({ afXdp: true, bpfLoop: true, tailCalls: true, btf: true });
    expect(d.interfaces).toEqual([
      expect.objectContaining({ name: fleet.agent("cap-1").veth.ifB, xdp: "native" }),
    ]);
    const listed = JSON.parse(fleet.cli(["device", "list", "--json"])) as {
      devices: Array<{ name: string; capabilities?: { mapTypes: string[] } }>;
    };
    expect(listed.devices.find((x) => x.name === "cap-1")?.capabilities?.mapTypes).toContain("lpm_trie");
    const shown = fleet.cli(["device", "show", "cap-1"]);
    expect(shown).toMatch(/AF_XDP: yes/);
    expect(shown).toContain(`interface ${fleet.agent("cap-1").veth.ifB}: XDP native`);
  });

  it("an interface that takes only generic XDP: the probe says so and the chain goes in in generic mode", async () => {
    const caps = await waitFor(
      "cap-ifb to report capabilities",
      60_000,
      async () => (await fleet.device("cap-ifb")).capabilities ?? undefined,
    );
    expect(caps.interfaces[0]).toMatchObject({ name: "ifb0", xdp: "generic", zeroCopy: false });
    fleet.cli(["chain", "assign", "macswap", "--devices", "cap-ifb"]);
    await fleet.converged("cap-ifb", "macswap", 1, 60_000);
    const link = await nsRun(fleet.agent("cap-ifb").veth.nsB, "ip", ["link", "show", "dev", "ifb0"]);
    expect(link.stdout).toMatch(/xdpgeneric/);
  });

  it("a userland chain is refused for a device whose kernel lacks AF_XDP; it keeps its chain until its report says otherwise", async () => {
    fleet.cli(["chain", "assign", "macswap", "--devices", "cap-1"]);
    const before = await fleet.converged("cap-1", "macswap", 1, 60_000);
    const agent = fleet.agent("cap-1");
    await agent.signal("SIGTERM");
    // The device as the older Smart SFP reports itself: the probe's report, edited here only.
    const bundle = agent.bundleDir;
    const device = new DeviceClient(fleet.controller.url, {
      certFile: path.join(bundle, BUNDLE_FILES.cert),
      keyFile: path.join(bundle, BUNDLE_FILES.key),
      caFile: path.join(bundle, BUNDLE_FILES.ca),
    });
    try {
      const report: DeviceStatusReport = {
        protocolVersion: PROTOCOL_VERSION,
        agentVersion: before.agentVersion ?? "0.1.0",
        arch: before.arch ?? "x86_64",
        kernelVersion: "4.14.98",
        installed: { chain: "macswap", version: 1 },
        state: "converged",
        errors: [],
        counters: [],
        capabilities: {
          ...before.capabilities!,
          kernelRelease: "4.14.98",
          kernel: { major: 4, minor: 14 },
          afXdp: false,
          bpfLoop: false,
        },
      };
      await device.postStatus(report);

      let output = "";
      try {
        fleet.cli(["chain", "assign", "macswap-user", "--devices", "cap-1"]);
      } catch (err) {
        output = (err as Error).message;
      }
      expect(output).toContain(
        'refused for cap-1: NF "macswap" runs in userland, which needs AF_XDP; kernel 4.14.98 has no AF_XDP (XSKMAP)',
      );
      const d = await fleet.device("cap-1");
      expect(d.refusal).toEqual({
        chain: "macswap-user",
        version: 1,
        reasons: ['NF "macswap" runs in userland, which needs AF_XDP; kernel 4.14.98 has no AF_XDP (XSKMAP)'],
      });
      expect(fleet.cli(["device", "list"])).toContain("cap-1: macswap-user v1 refused for this device: NF");
      // the device is sent what it runs, not the refused chain
      const served = await device.getAssignment(undefined, before.arch ?? "x86_64");
      expect(served.changed && served.assignment.chain?.name).toBe("macswap");

      let plan = "";
      try {
        fleet.cli(["chain", "plan", "--device", "cap-1", userlandFile]);
      } catch (err) {
        plan = (err as Error).message;
      }
      expect(plan).toContain("chain macswap-user on cap-1: kernel 4.14.98, XDP native, AF_XDP no");
      expect(plan).toContain('refused for cap-1: NF "macswap" runs in userland');
      expect(
        fleet.cli(["chain", "plan", "--device", "cap-1", path.join(repoRoot, "chains", "macswap.toml")]),
      ).toMatch(/fits cap-1/);
    } finally {
      device.close();
    }

    // The real agent reports its real capabilities: the refusal ends and the chain goes in.
    agent.start();
    await fleet.converged("cap-1", "macswap-user", 1, 90_000);
    expect((await fleet.device("cap-1")).refusal ?? null).toBeNull();
  });
});
