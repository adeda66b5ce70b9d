import {
  describeKernel,
  exchangeFrames,
  spawnGalette as galette,
  sleep,
  udpFrame,
  type VethPair,
} from "@galette/testkit";
import { queryXdp } from "@galette/xdp-native";
import { beforeAll, expect, it } from "vitest";
import { readRecord } from "../src/record";
import { builtChainFile, vethFixture } from "./helpers";

describeKernel("galette dataplane up|down", () => {
  const fixture = vethFixture("icli");
  const { state } = fixture;
  let veth: VethPair;
  const target = () => ({ iface: veth.ifB, netns: veth.nsB });

  beforeAll(async () => {
    veth = fixture.veth;
    await builtChainFile("macswap.toml");
  });

  it("up installs, prints per-NF counters, uninstalls on SIGTERM; down cleans up after a crash", async () => {
    const common = ["--iface", veth.ifB, "--netns", veth.nsB, "--state-dir", state.dir];
    let ready: () => void = () => undefined;
    const printed = new Promise<void>((r) => {
      ready = r;
    });
    const run = galette(["dataplane", "up", ...common, "chains/macswap.toml"], {
      onStdout: (out) => out.includes('chain "macswap"') && ready(),
    });
    await Promise.race([printed, run.done]);
    const frame = udpFrame({
      dstMac: veth.macB,
      srcMac: veth.macA,
      srcIp: veth.ipA,
      dstIp: veth.ipB,
      payload: Buffer.from("t-cli"),
    });
    const r = await exchangeFrames(veth.nsA, veth.ifA, {
      send: [frame],
      repeat: 10,
      expect: 10,
      listenMs: 1000,
      match: Buffer.from("t-cli"),
    });
    expect(r.received).toHaveLength(10);
    await sleep(1300); // one more counter print
    run.child.kill("SIGTERM");
    const res = await run.done;
    expect(res.stderr).not.toMatch(/"level":50/);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/macswap\s+#0\s+xdp\s+Tx=10/);
    expect(queryXdp({ ifname: veth.ifB, netns: `/run/netns/${veth.nsB}` }).progId).toBe(0);
    expect(readRecord(target(), state.dir)).toBeUndefined();

    // a crashed `up` (SIGKILL: no uninstall) leaves the chain; `down` removes it
    const crashed = galette(["dataplane", "up", ...common, "chains/macswap.toml"], {
      onStdout: (out) => out.includes('chain "macswap"') && crashed.child.kill("SIGKILL"),
    });
    expect((await crashed.done).signal).toBe("SIGKILL");
    expect(readRecord(target(), state.dir)?.spec.chain).toBe("macswap");
    expect(queryXdp({ ifname: veth.ifB, netns: `/run/netns/${veth.nsB}` }).progId).not.toBe(0);
    const down = await galette(["dataplane", "down", ...common]).done;
    expect(down.stdout).toContain(`removed the installation on ${veth.ifB}`);
    expect(queryXdp({ ifname: veth.ifB, netns: `/run/netns/${veth.nsB}` }).progId).toBe(0);
    expect(readRecord(target(), state.dir)).toBeUndefined();
    const again = await galette(["dataplane", "down", ...common]).done;
    expect(again.stdout).toContain("nothing installed");

    const bad = await galette(["dataplane", "up", ...common, "--workers", "0", "chains/macswap.toml"]).done;
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--workers must be a positive integer, got "0"');
  });
});
