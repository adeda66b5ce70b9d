/**
 * A chain per direction through the controller: the agent of a two-port device (ports:
 * [its veth, an ifb]) probes both ports, reports them, and with xdpMode auto installs in
 * generic mode because the ifb only takes generic XDP; the signed rx.a/rx.b chain
 * (chains/bridge-directions.toml) converges there with a root slot per direction. A
 * one-port device is refused the same chain with the reason.
 */
import path from "node:path";
import { readRecord } from "@galette/installer";
import { describeKernel, nsRun } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Fleet, waitFor } from "./fleet";

describeKernel("a chain per direction on a two-port device", () => {
  const fleet = new Fleet();

  beforeAll(async () => {
    await fleet.start({
      devices: [
        {
          name: "dir-2p",
          websocket: true,
          pollIntervalSeconds: 2,
          peer: {
            name: "ifb1",
            setup: async (ns) => {
              await nsRun(ns, "ip", ["link", "add", "ifb1", "type", "ifb"]);
              await nsRun(ns, "ip", ["link", "set", "ifb1", "up"]);
            },
          },
        },
        { name: "dir-1p", websocket: true, pollIntervalSeconds: 2 },
      ],
    });
    await fleet.publish("dest-ip-branch");
    await fleet.publish("decrement-ttl");
    await fleet.push("chains/bridge-directions.toml");
  }, 600_000);

  afterAll(() => fleet.cleanup());

  it("probes and reports both ports, installs the rx.a/rx.b chain in generic mode (auto), refuses it for a one-port device", async () => {
    const agent = fleet.agent("dir-2p");
    const caps = await waitFor(
      "dir-2p to report capabilities",
      60_000,
      async () => (await fleet.device("dir-2p")).capabilities ?? undefined,
    );
    expect(caps.interfaces).toEqual([
      expect.objectContaining({ name: agent.veth.ifB, xdp: "native" }),
      expect.objectContaining({ name: "ifb1", xdp: "generic" }),
    ]);

    fleet.cli(["chain", "assign", "bridge-directions", "--devices", "dir-2p"]);
    await fleet.converged("dir-2p", "bridge-directions", 1, 120_000);
    for (const port of [agent.veth.ifB, "ifb1"]) {
      const link = await nsRun(agent.veth.nsB, "ip", ["link", "show", "dev", port]);
      expect(link.stdout).toMatch(/xdpgeneric/);
    }
    const record = readRecord(
      { iface: agent.veth.ifB, peer: "ifb1", netns: agent.veth.nsB },
      path.resolve(agent.bundleDir, agent.config.stateDir),
    );
    expect(record?.mode).toBe("skb");
    const spec = record!.spec;
    const idOf = (name: string) => spec.instances.find((i) => i.name === name)!.id;
    expect([spec.entry, spec.entryB]).toEqual([idOf("guard"), idOf("ttl-ba")]);

    await waitFor(
      "dir-1p to report capabilities",
      60_000,
      async () => (await fleet.device("dir-1p")).capabilities ?? undefined,
    );
    let output = "";
    try {
      fleet.cli(["chain", "assign", "bridge-directions", "--devices", "dir-1p"]);
    } catch (err) {
      output = (err as Error).message;
    }
    expect(output).toContain(
      `refused for dir-1p: the chain has a direction per port (rx.a, rx.b) and needs two ports; the device reports one interface (${fleet.agent("dir-1p").veth.ifB})`,
    );
  });
});
