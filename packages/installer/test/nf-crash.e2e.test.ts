/**
 * A userland NF that crashes its worker process: the installing process lives on, the
 * worker is restarted, other frames keep flowing, and the crash is reported as that NF's
 * error (what the agent puts in its status report) and counted against it.
 */
import { describeKernel, exchangeFrames, udpFrame } from "@galette/testkit";
import { beforeAll, expect, it } from "vitest";
import type { NfWorkerError } from "../src/kernel";
import { builtChainText, install, vethFixture } from "./helpers";

const chain = `
[chain]
name = "crasher"

[functions.crasher]
path = "packages/installer/test/fixtures/crasher"
disable_xdp = true

[[links]]
from = "rx"
to = ["crasher"]

[[links]]
from = "crasher"
to = ["tx"]
`;

const waitFor = async (probe: () => boolean, ms: number) => {
  const end = Date.now() + ms;
  while (!probe() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return probe();
};

describeKernel("installer: a userland NF that crashes its worker", () => {
  const fx = vethFixture("icr");
  let built: Awaited<ReturnType<typeof builtChainText>>;
  beforeAll(async () => {
    built = await builtChainText(chain, "crasher.toml");
  }, 300_000);

  it("is restarted, keeps forwarding, and is reported as that NF's error", async () => {
    const { veth, state } = fx;
    const errors: NfWorkerError[] = [];
    const dp = await install(
      built,
      { iface: veth.ifB, netns: veth.nsB },
      { stateDir: state.dir, workers: { count: 1 }, onNfError: (e) => errors.push(e) },
    );
    try {
      const base = { dstMac: veth.macB, srcMac: veth.macA, dstIp: veth.ipB, srcIp: veth.ipA };
      const send = (payload: string, n: number, expectN?: number) =>
        exchangeFrames(veth.nsA, veth.ifA, {
          send: [udpFrame({ ...base, payload: Buffer.from(payload) })],
          repeat: n,
          pps: 1000,
          listenMs: 600,
          match: Buffer.from(payload),
          ...(expectN ? { expect: expectN } : {}),
        });
      expect((await send("ok-before", 10, 10)).received).toHaveLength(10);

      expect((await send("!boom", 1)).received).toHaveLength(0);
      expect(await waitFor(() => errors.length === 1 && dp.workerHealth()?.state === "running", 3000)).toBe(
        true,
      );
      const id = dp.spec.instances.find((i) => i.name === "crasher")!.id;
      expect(errors[0]).toMatchObject({ nf: "crasher", instance: id });
      expect(errors[0]!.message).toMatch(
        new RegExp(
          `^NF "crasher" \\(instance ${id}\\): .*killed by SIG\\w+ while running NF instance ${id}; restarting$`,
        ),
      );
      expect(dp.counters().find((c) => c.name === "crasher")!.workerCrashes).toBe(1);
      expect(dp.workerHealth()).toMatchObject({ crashes: 1, restarts: 1 });

      expect((await send("ok-after", 10, 10)).received).toHaveLength(10);
    } finally {
      dp.uninstall();
    }
  });
});
