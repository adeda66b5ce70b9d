/**
 * Tooling of `make demo` (scripts/demo.sh) for what the `galette` CLI does not offer: the
 * devices' networks (@galette/testkit topologies), waiting for devices to converge or roll
 * back, sending frames through a device with @galette/testkit, and printing the counters
 * devices report.
 * Operator credentials come from GALETTE_URL, GALETTE_TOKEN and GALETTE_CA.
 */
import type { OperatorClient } from "@galette/controller";
import { attachXdpPass, exchangeFrames, udpFrame } from "@galette/testkit/frames";
import { createVethPair, nsRun } from "@galette/testkit/netns";
import { sleep } from "@galette/testkit/time";
import { createTwoPortTopology } from "@galette/testkit/topology";

const [command, ...args] = process.argv.slice(2);
// loaded only by the commands that call the controller: the traffic commands start faster
const operator = async () => {
  const { loadOperatorConfig, OperatorClient } = await import("@galette/controller");
  return new OperatorClient(loadOperatorConfig());
};
const need = (n: number, usage: string) => {
  if (args.length < n) throw new Error(`usage: demo-ops.ts ${command} ${usage}`);
};
type Device = Awaited<ReturnType<OperatorClient["listDevices"]>>["devices"][number];

/** Polls the device list every 200 ms until `done` returns a line to print, or fails after `timeoutS`. */
async function waitDevices(
  timeoutS: string,
  names: string[],
  done: (d: Device) => string | undefined,
  what: string,
): Promise<void> {
  const deadline = Date.now() + Number(timeoutS) * 1000;
  for (;;) {
    const { devices: all } = await (await operator()).listDevices();
    const found = names.map((name) => ({ name, d: all.find((x) => x.name === name) }));
    const lines = found.map(({ d }) => (d ? done(d) : undefined));
    if (lines.every((l) => l !== undefined)) {
      for (const l of lines) console.log(`  ${l}`);
      return;
    }
    if (Date.now() > deadline) {
      const why = found
        .filter((_, i) => lines[i] === undefined)
        .map(
          ({ name, d }) =>
            `${name}: state ${d?.state ?? "-"}, installed ${d?.installed ? `${d.installed.chain} v${d.installed.version}` : "-"}, ${d?.errors.map((e) => e.message).join("; ") || "no errors"}`,
        );
      throw new Error(`${what} within ${timeoutS} s:\n  ${why.join("\n  ")}`);
    }
    await sleep(200);
  }
}

const printVars = (prefix: string, vars: Record<string, string>) => {
  for (const [k, v] of Object.entries(vars)) console.log(`${prefix}_${k}=${v}`);
};

/**
 * A frame tagged with `tag` (the receiver keeps only frames carrying it). "udp": a UDP flow,
 * whose first packets the weak classifier sends up to the userland DPI; "normal": IP
 * protocol 1 (not TCP/UDP), which it calls Normal and XDP sends on at once.
 */
function demoFrame(o: {
  srcMac: string;
  dstMac: string;
  srcIp: string;
  dstIp: string;
  tag: string;
  kind: string;
}) {
  const frame = udpFrame({ ...o, srcPort: 4000 + (o.tag.length % 100), payload: Buffer.from(o.tag) });
  if (o.kind === "normal") frame[23] = 1;
  else if (o.kind !== "udp") throw new Error(`frame kind ${JSON.stringify(o.kind)}: normal|udp`);
  return frame;
}

async function main(): Promise<void> {
  switch (command) {
    case "two-port": {
      // host A | device (p1, p2) | host B, printed as shell assignments PREFIX_dev=… for demo.sh.
      need(2, "TAG PREFIX");
      const t = await createTwoPortTopology(args[0]!);
      printVars(args[1]!, {
        dev: t.device,
        p1: t.p1,
        p2: t.p2,
        a_ns: t.a.ns,
        a_if: t.a.iface,
        a_ip: t.a.ip,
        a_mac: t.a.mac,
        b_ns: t.b.ns,
        b_if: t.b.iface,
        b_ip: t.b.ip,
        b_mac: t.b.mac,
      });
      return;
    }
    case "veth": {
      // generator ⇄ device (one port), printed like two-port; the generator end runs XDP_PASS.
      need(2, "TAG PREFIX");
      const v = await createVethPair(args[0]!);
      await attachXdpPass(v.nsA, v.ifA).catch(async (err: unknown) => {
        await v.cleanup();
        throw err;
      });
      printVars(args[1]!, {
        gen_ns: v.nsA,
        gen_if: v.ifA,
        gen_ip: v.ipA,
        gen_mac: v.macA,
        dev: v.nsB,
        dev_if: v.ifB,
        dev_ip: v.ipB,
        dev_mac: v.macB,
      });
      return;
    }
    case "wait": {
      need(3, "CHAIN[@VERSION] TIMEOUT_S DEVICE...");
      const [which, timeout, ...devices] = args as [string, string, ...string[]];
      const [chain, version] = which.split("@") as [string, string | undefined];
      await waitDevices(
        timeout,
        devices,
        (d) =>
          d.installed?.chain === chain &&
          (version === undefined || d.installed.version === Number(version)) &&
          d.state === "converged"
            ? `${d.name}: ${chain} v${d.installed.version} converged (${d.arch}, kernel ${d.kernelVersion})`
            : undefined,
        `devices did not converge on ${which}`,
      );
      return;
    }
    case "refused": {
      need(4, "CHAIN VERSION TIMEOUT_S DEVICE...");
      const [chain, version, timeout, ...devices] = args as [string, string, string, ...string[]];
      await waitDevices(
        timeout,
        devices,
        (d) =>
          d.errors.some((e) => e.message.startsWith(`refused chain "${chain}" v${version}`))
            ? `${d.name}: refused ${chain} v${version}, still running v${d.installed?.version ?? "-"}`
            : undefined,
        `devices did not refuse ${chain} v${version}`,
      );
      return;
    }
    case "rolled-back": {
      // The dead-man's switch put `restored` back and holds CHAIN vVERSION.
      need(5, "CHAIN VERSION RESTORED_VERSION TIMEOUT_S DEVICE...");
      const [chain, version, restored, timeout, ...devices] = args as [
        string,
        string,
        string,
        string,
        ...string[],
      ];
      await waitDevices(
        timeout,
        devices,
        (d) =>
          d.rollback?.chain === chain &&
          d.rollback.version === Number(version) &&
          d.installed?.chain === chain &&
          d.installed.version === Number(restored)
            ? `${d.name}: back on ${chain} v${restored}, holding v${version}: ${d.rollback.reason}`
            : undefined,
        `devices did not roll ${chain} v${version} back to v${restored}`,
      );
      return;
    }
    case "xdp-pass": {
      need(2, "NS IFACE");
      await attachXdpPass(args[0]!, args[1]!);
      return;
    }
    case "traffic": {
      // Frames out of IFACE and back in on it (a device that reflects): prints "sent received".
      need(8, "NS IFACE SRC_MAC DST_MAC SRC_IP DST_IP COUNT TAG [normal|udp]");
      const [ns, iface, srcMac, dstMac, srcIp, dstIp, count, tag, kind = "normal"] = args as string[];
      const r = await exchangeFrames(ns!, iface!, {
        send: [
          demoFrame({ srcMac: srcMac!, dstMac: dstMac!, srcIp: srcIp!, dstIp: dstIp!, tag: tag!, kind }),
        ],
        repeat: Number(count),
        pps: 1000,
        listenMs: 500,
        match: Buffer.from(tag!),
      });
      console.log(`${r.sent} ${r.received.length}`);
      return;
    }
    case "forward": {
      // Frames from one host through a two-port device to the other: prints "sent received".
      need(10, "FROM_NS FROM_IF SRC_MAC SRC_IP TO_NS TO_IF DST_MAC DST_IP COUNT TAG [normal|udp]");
      const [fromNs, fromIf, srcMac, srcIp, toNs, toIf, dstMac, dstIp, count, tag, kind = "normal"] =
        args as string[];
      const n = Number(count);
      const match = Buffer.from(tag!);
      // The receiver's packet socket must be open before the first frame leaves: wait until
      // one more shows in its namespace (`ss -0`) than before it started. It listens 6 s
      // (less once all arrived): ample for the sender to start and send, even on a busy host.
      const packetSockets = async () =>
        (await nsRun(toNs!, "ss", ["-0", "-H", "-n"])).stdout.split("\n").filter(Boolean).length;
      const before = await packetSockets();
      const started = Date.now();
      const received = exchangeFrames(toNs!, toIf!, { send: [], expect: n, listenMs: 6000 + n, match });
      while ((await packetSockets()) <= before) {
        if (Date.now() - started > 10_000) throw new Error(`no packet socket in ${toNs} after 10 s`);
        await sleep(50);
      }
      const sent = await exchangeFrames(fromNs!, fromIf!, {
        send: [
          demoFrame({ srcMac: srcMac!, dstMac: dstMac!, srcIp: srcIp!, dstIp: dstIp!, tag: tag!, kind }),
        ],
        repeat: n,
        pps: 1000,
        listenMs: 0,
      });
      console.log(`${sent.sent} ${(await received).received.length}`);
      return;
    }
    case "counters": {
      need(1, "DEVICE...");
      const { devices } = await (await operator()).listDevices();
      for (const name of args) {
        const d = devices.find((x) => x.name === name);
        if (!d) throw new Error(`no device ${name}`);
        const parts = d.counters.map((c) => {
          const fields = Object.entries(c.counters)
            .filter(([k]) => k !== "packets")
            .map(([k, v]) => `${k}=${v}`)
            .join(" ");
          return `${c.instance}[${c.counters.packets ?? 0}: ${fields}]`;
        });
        console.log(`  ${name}: ${parts.join("  ") || "no counters"}`);
      }
      return;
    }
    case "counters-agree": {
      // The security chain's counters add up: every frame access-control Allowed reached the
      // weak classifier, every one it found Suspicious reached the DPI. Reports lag the
      // traffic by up to a status interval: polled for up to 10 s.
      need(1, "DEVICE...");
      const deadline = Date.now() + 10_000;
      for (;;) {
        const { devices } = await (await operator()).listDevices();
        const verdicts = args.map((name) => {
          const c = (instance: string) =>
            devices.find((x) => x.name === name)?.counters.find((k) => k.instance === instance)?.counters ??
            {};
          const [ac, wc, dpi] = [c("access-control"), c("weak-classifier"), c("dpi")];
          const ok = ac.Allowed === wc.packets && wc.Suspicious === dpi.packets && (wc.packets ?? 0) > 0;
          return {
            ok,
            line: `${name}: access-control Allowed ${ac.Allowed} = weak-classifier ${wc.packets}; weak-classifier Suspicious ${wc.Suspicious} = dpi ${dpi.packets}`,
          };
        });
        if (verdicts.every((v) => v.ok) || Date.now() > deadline) {
          for (const v of verdicts) console.log(`  ${v.line}${v.ok ? "" : "  (they differ)"}`);
          if (!verdicts.every((v) => v.ok)) process.exitCode = 1;
          return;
        }
        await sleep(500);
      }
    }
    default:
      throw new Error(
        `unknown command ${JSON.stringify(command)}: two-port|veth|wait|refused|rolled-back|xdp-pass|traffic|forward|counters|counters-agree`,
      );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
