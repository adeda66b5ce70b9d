/**
 * A userland NF's `pass` reaches the host stack: the workers write passed frames to a TAP
 * device beside the port (the port's MAC), the stack answers out of the port by its routes.
 * Tested with ping and a UDP listener on the device's own address, through a chain whose
 * only NF runs in userland and passes what it forwards.
 */
import { createVethPair, describeKernel, nsRun, run, sleep, type VethPair } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Dataplane, Dataplane as DP } from "../src/kernel";
import { builtChainText, install, quietLogger, stateDir } from "./helpers";
import { numberedUdp, sequenceProblems } from "./two-port-helpers";

const PASS_TO_HOST = `
[chain]
name = "host-pass"

[functions.decrement-ttl]
disable_xdp = true

[[links]]
from = "rx"
to = ["decrement-ttl"]

# Next: to the host stack; Expired: dropped
[[links]]
from = "decrement-ttl"
to = ["pass", "drop"]
`;

describeKernel("host delivery: pass from userland", () => {
  let veth: VethPair;
  const state = stateDir();
  let dp: Dataplane | undefined;

  beforeAll(async () => {
    veth = await createVethPair("hd");
    // the sender's checksums complete (the TAP hands frames to the stack as they arrived)
    await nsRun(veth.nsA, "ethtool", ["-K", veth.ifA, "tx", "off"]);
  });

  afterAll(async () => {
    if (dp) dp.uninstall();
    else if (veth) DP.remove({ iface: veth.ifB, netns: veth.nsB }, { stateDir: state.dir });
    await veth?.cleanup();
    state.cleanup();
  });

  it("ping and UDP to the device's own address go through the userland NF to the host stack", async () => {
    const built = await builtChainText(PASS_TO_HOST, "host-pass.toml");
    dp = await install(
      built,
      { iface: veth.ifB, netns: veth.nsB },
      {
        stateDir: state.dir,
        workers: { count: 2 },
        logger: quietLogger(),
      },
    );
    const { stdout: links } = await run("ip", ["-n", veth.nsB, "-j", "link", "show"]);
    const tap = (JSON.parse(links) as Array<{ ifname: string; address: string }>).find((l) =>
      l.ifname.startsWith("galh"),
    );
    expect(tap?.address).toBe(veth.macB); // the port's MAC: the stack takes the frames as its own

    const ping = await nsRun(veth.nsA, "ping", ["-c", "5", "-i", "0.05", "-W", "2", veth.ipB]);
    expect(ping.stdout).toContain("5 received");

    const count = 500;
    const udp = await numberedUdp(
      { ns: veth.nsA, iface: veth.ifA, ip: veth.ipA, mac: veth.macA },
      { ns: veth.nsB, iface: veth.ifB, ip: veth.ipB, mac: veth.macB },
      7001,
      count,
    );
    await udp.sent;
    expect(sequenceProblems(await udp.received, count)).toEqual([]);
    await sleep(200);

    // every frame that arrived went through the NF and was passed (5 echo requests + the
    // datagrams), none dropped; the replies left by the port without the chain (egress)
    const ws = dp.workerStats()!;
    const [ttl] = dp.counters();
    expect(ws.totals.passed).toBe(5 + count);
    expect(ws.totals.rx).toBe(5 + count);
    expect(ws.totals.dropped).toBe(0);
    expect(ttl!.variants.Next).toBe(5 + count);

    dp.uninstall();
    dp = undefined;
    // the TAP device goes with the workers
    const { stdout: after } = await run("ip", ["-n", veth.nsB, "-j", "link", "show"]);
    expect((JSON.parse(after) as Array<{ ifname: string }>).some((l) => l.ifname.startsWith("galh"))).toBe(
      false,
    );
  });
});
