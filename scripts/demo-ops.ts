/**
 * Tooling of `make demo` (scripts/demo.sh) for what the `galette` CLI does not offer: waiting
 * for devices to converge, sending frames through a device with @galette/testkit, and
 * printing the counters devices report.
 * Operator credentials come from GALETTE_URL, GALETTE_TOKEN and GALETTE_CA.
 */
import { loadOperatorConfig, OperatorClient } from "@galette/controller";
import { attachXdpPass, exchangeFrames, udpFrame } from "@galette/testkit/frames";
import { sleep } from "@galette/testkit/time";

const [command, ...args] = process.argv.slice(2);
const operator = () => new OperatorClient(loadOperatorConfig());
const need = (n: number, usage: string) => {
  if (args.length < n) throw new Error(`usage: ops.ts ${command} ${usage}`);
};

async function main(): Promise<void> {
  switch (command) {
    case "wait": {
      need(3, "CHAIN TIMEOUT_S DEVICE...");
      const [chain, timeout, ...devices] = args as [string, string, ...string[]];
      const deadline = Date.now() + Number(timeout) * 1000;
      for (;;) {
        const { devices: all } = await operator().listDevices();
        const pending = devices.filter((name) => {
          const d = all.find((x) => x.name === name);
          return !(d?.installed?.chain === chain && d.state === "converged");
        });
        if (pending.length === 0) {
          for (const name of devices) {
            const d = all.find((x) => x.name === name)!;
            console.log(
              `  ${name}: ${chain} v${d.installed!.version} converged (${d.arch}, kernel ${d.kernelVersion})`,
            );
          }
          return;
        }
        if (Date.now() > deadline) {
          const why = all
            .filter((d) => pending.includes(d.name))
            .map(
              (d) =>
                `${d.name}: state ${d.state ?? "-"}, ${d.errors.map((e) => e.message).join("; ") || "no errors"}`,
            );
          throw new Error(`devices did not converge on ${chain} within ${timeout} s:\n  ${why.join("\n  ")}`);
        }
        await sleep(200);
      }
    }
    case "refused": {
      need(4, "CHAIN VERSION TIMEOUT_S DEVICE...");
      const [chain, version, timeout, ...devices] = args as [string, string, string, ...string[]];
      const deadline = Date.now() + Number(timeout) * 1000;
      const tag = `"${chain}" v${version}`;
      for (;;) {
        const { devices: all } = await operator().listDevices();
        const refusals = devices.map((name) => {
          const d = all.find((x) => x.name === name);
          return { name, d, error: d?.errors.find((e) => e.message.startsWith(`refused chain ${tag}`)) };
        });
        if (refusals.every((r) => r.error)) {
          for (const { name, d } of refusals)
            console.log(
              `  ${name}: refused ${chain} v${version}, still running v${d?.installed?.version ?? "-"}`,
            );
          return;
        }
        if (Date.now() > deadline) {
          const why = refusals.map(
            (r) => `${r.name}: state ${r.d?.state ?? "-"}, installed v${r.d?.installed?.version ?? "-"}`,
          );
          throw new Error(
            `devices did not refuse ${chain} v${version} within ${timeout} s:\n  ${why.join("\n  ")}`,
          );
        }
        await sleep(200);
      }
    }
    case "xdp-pass": {
      need(2, "NS IFACE");
      await attachXdpPass(args[0]!, args[1]!);
      return;
    }
    case "traffic": {
      need(8, "NS IFACE SRC_MAC DST_MAC SRC_IP DST_IP COUNT TAG [normal|udp]");
      const [ns, iface, srcMac, dstMac, srcIp, dstIp, count, tag, kind = "normal"] = args as string[] as [
        string,
        string,
        string,
        string,
        string,
        string,
        string,
        string,
        string?,
      ];
      const frame = udpFrame({
        srcMac,
        dstMac,
        srcIp,
        dstIp,
        srcPort: 4000 + (tag.length % 100),
        payload: Buffer.from(tag),
      });
      // IP protocol 1 (not TCP/UDP): the weak classifier calls it Normal and XDP sends it back.
      // A UDP flow's first packets go up to the userland DPI instead.
      if (kind === "normal") frame[23] = 1;
      const r = await exchangeFrames(ns, iface, {
        send: [frame],
        repeat: Number(count),
        pps: 1000,
        listenMs: 500,
        match: Buffer.from(tag),
      });
      console.log(`${r.sent} ${r.received.length}`);
      return;
    }
    case "counters": {
      need(1, "DEVICE...");
      const { devices } = await operator().listDevices();
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
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}: wait|refused|xdp-pass|traffic|counters`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
