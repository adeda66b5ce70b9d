import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  attachXdpPass,
  createVethPair,
  describeKernel,
  exchangeFrames,
  INSTALLATION_PINS_ROOT,
  pinnedInstallations,
  run,
  udpFrame,
  type VethPair,
} from "../src";

describeKernel("testkit veth topology", () => {
  let pair: VethPair;
  beforeAll(async () => {
    pair = await createVethPair("tk");
  });
  afterAll(async () => {
    await pair?.cleanup();
  });

  it("creates two namespaces joined by a veth that carries frames", async () => {
    await attachXdpPass(pair.nsA, pair.ifA);
    // A frame to an address B does not own is not answered: nothing comes back.
    const tag = Buffer.from("testkit-quiet");
    const frame = udpFrame({
      dstMac: pair.macB,
      srcMac: pair.macA,
      srcIp: pair.ipA,
      dstIp: "10.250.0.9",
      payload: tag,
    });
    const res = await exchangeFrames(pair.nsA, pair.ifA, { send: [frame], listenMs: 100, match: tag });
    expect(res.sent).toBe(1);
    expect(res.received).toHaveLength(0);
    const { stdout } = await run("nsenter", [
      `--net=/run/netns/${pair.nsA}`,
      "--",
      "ping",
      "-c1",
      "-W1",
      pair.ipB,
    ]);
    expect(stdout).toMatch(/1 received/);
  });

  it("removes everything on cleanup", async () => {
    const probe = await createVethPair("tk");
    await probe.cleanup();
    const { stdout } = await run("ip", ["netns", "list"]);
    expect(stdout).not.toContain(probe.nsA);
    expect(stdout).not.toContain(probe.nsB);
  });

  it("fails the cleanup that finds an installation pinned on its interfaces, and removes it", async () => {
    const probe = await createVethPair("tk");
    // as the installer pins an installation on B's interface in B's namespace
    const dir = path.join(INSTALLATION_PINS_ROOT, `${probe.ifB}@${probe.nsB}`);
    mkdirSync(dir, { recursive: true });
    await run("bpftool", [
      "map",
      "create",
      path.join(dir, "left"),
      "type",
      "array",
      "key",
      "4",
      "value",
      "4",
      "entries",
      "1",
      "name",
      "tk_left",
    ]);
    await expect(probe.cleanup()).rejects.toThrow(
      `the test left pinned installations on its interfaces (removed now): ${dir}`,
    );
    expect(existsSync(dir)).toBe(false);
  });
});

describe("pinnedInstallations", () => {
  it("names the installations on the given interfaces or in the given namespaces, no others", () => {
    const root = mkdtempSync(path.join(tmpdir(), "galette-pins-"));
    try {
      const entries = [
        "gb1a2b3c", // installed from inside the namespace: the interface alone
        "gb1a2b3c@gal-tk-1a2b3c-b",
        "p11a2b3c+p21a2b3c@gal-2p-1a2b3c-d",
        "eth0@gal-tk-1a2b3c-b", // a port named by the caller, in our namespace
        "eth0", // the same name, somebody else's
        "gb9f9f9f@gal-tk-9f9f9f-b",
        "gb1a2b3cd", // a longer name that starts like ours
        "vlan~10@gal-tk-1a2b3c-a", // a dot in the interface name
      ];
      for (const e of entries) mkdirSync(path.join(root, e));
      const own = {
        ifaces: ["ga1a2b3c", "gb1a2b3c", "p21a2b3c"],
        namespaces: ["gal-tk-1a2b3c-a", "gal-tk-1a2b3c-b"],
      };
      expect(
        pinnedInstallations(own, root)
          .map((d) => path.basename(d))
          .sort(),
      ).toEqual(
        [
          "gb1a2b3c",
          "gb1a2b3c@gal-tk-1a2b3c-b",
          "p11a2b3c+p21a2b3c@gal-2p-1a2b3c-d",
          "eth0@gal-tk-1a2b3c-b",
          "vlan~10@gal-tk-1a2b3c-a",
        ].sort(),
      );
      expect(pinnedInstallations(own, path.join(root, "missing"))).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
