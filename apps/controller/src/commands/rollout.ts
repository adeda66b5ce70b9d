import type { Rollout, RolloutOfflinePolicy } from "@galette/protocol";
import type { Command } from "commander";
import { formatGateTerm, GateError, parseGate } from "../rollouts-gate";
import { client as operatorClient, parseLabels } from "./controller";

const out = (text: string) => process.stdout.write(`${text}\n`);

/** `60s`, `10m`, `1h`, `90` (seconds) → seconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(value.trim());
  if (!m) throw new Error(`${flag}: ${JSON.stringify(value)} is not a duration (e.g. 60s, 10m, 1h)`);
  const seconds = Number(m[1]) * (m[2] === "h" ? 3600 : m[2] === "m" ? 60 : 1);
  if (seconds <= 0) throw new Error(`${flag}: the duration must be above zero`);
  return seconds;
}

/** `security` or `security@4`. */
export function parseChainRef(value: string): { chain: string; version?: number } {
  const at = value.lastIndexOf("@");
  if (at < 0) return { chain: value };
  const version = Number(value.slice(at + 1));
  if (!(Number.isInteger(version) && version > 0))
    throw new Error(`${JSON.stringify(value)}: the version after @ must be a positive integer`);
  return { chain: value.slice(0, at), version };
}

const OFFLINE: readonly RolloutOfflinePolicy[] = ["wait", "skip", "fail"];

export function registerRolloutCommands(program: Command): void {
  const rollout = program
    .command("rollout")
    .description("Staged rollouts: a chain version phase by phase, gated on what devices report");

  rollout
    .command("start")
    .description("Roll CHAIN[@VERSION] out to the selected devices phase by phase (docs/operator-guide.md)")
    .argument("<chain>", "CHAIN or CHAIN@VERSION (default: the latest version)")
    .requiredOption("--to <labels>", "k=v,... : the devices whose labels include all of them")
    .requiredOption("--phases <list>", "cumulative device counts or percentages, e.g. 1,10%,50%,100%")
    .requiredOption("--soak <duration>", "how long each phase runs before the next (60s, 10m, 1h)")
    .requiredOption("--gate <expression>", "what each device must satisfy, e.g. 'installed && aborts == 0'")
    .option("--offline <policy>", "a device offline when its soak ends: wait | skip | fail", "wait")
    .option("--json", "print the rollout as JSON")
    .action(
      async (
        ref: string,
        flags: { to: string; phases: string; soak: string; gate: string; offline: string; json?: boolean },
      ) => {
        try {
          parseGate(flags.gate);
        } catch (err) {
          if (err instanceof GateError) throw new Error(`--gate: ${err.message}\n${err.pointer}`);
          throw err;
        }
        if (!OFFLINE.includes(flags.offline as RolloutOfflinePolicy))
          throw new Error(
            `--offline must be one of ${OFFLINE.join(", ")}, got ${JSON.stringify(flags.offline)}`,
          );
        const selector = parseLabels(flags.to);
        if (Object.keys(selector).length === 0) throw new Error("--to: give at least one label (k=v)");
        const started = await operatorClient().startRollout({
          ...parseChainRef(ref),
          selector,
          phases: flags.phases
            .split(",")
            .map((p) => p.trim())
            .filter(Boolean),
          soakSeconds: parseDuration(flags.soak, "--soak"),
          gate: flags.gate,
          offline: flags.offline as RolloutOfflinePolicy,
        });
        out(flags.json ? JSON.stringify(started, null, 2) : renderRollout(started));
      },
    );

  rollout
    .command("status")
    .description("Show a rollout: phases, devices, and why it stopped (default: the newest rollout)")
    .argument("[id]", "rollout id")
    .option("--json", "print the rollout as JSON")
    .action(async (id: string | undefined, flags: { json?: boolean }) => {
      const api = operatorClient();
      let shown: Rollout | undefined;
      if (id !== undefined) shown = await api.getRollout(parseId(id));
      else shown = (await api.listRollouts()).rollouts[0];
      if (!shown) {
        if (flags.json) out("null");
        else out("no rollout yet (galette rollout start)");
        return;
      }
      out(flags.json ? JSON.stringify(shown, null, 2) : renderRollout(shown));
    });

  rollout
    .command("list")
    .description("List rollouts, newest first")
    .option("--json", "print them as JSON")
    .action(async (flags: { json?: boolean }) => {
      const { rollouts } = await operatorClient().listRollouts();
      if (flags.json) {
        out(JSON.stringify({ rollouts }, null, 2));
        return;
      }
      if (rollouts.length === 0) out("no rollout yet");
      for (const r of rollouts) out(`${headline(r)}${r.stop ? ` — ${r.stop.message}` : ""}`);
    });

  for (const action of ["pause", "resume", "abort"] as const) {
    const what = {
      pause: "Stop advancing a running rollout (devices keep what they run)",
      resume: "Continue a paused rollout (a phase stopped by its gate runs again)",
      abort: "End a rollout and put every device it moved back on what it ran before",
    }[action];
    rollout
      .command(action)
      .description(`${what} (default: the one running or paused rollout)`)
      .argument("[id]", "rollout id")
      .option("--json", "print the rollout as JSON")
      .action(async (id: string | undefined, flags: { json?: boolean }) => {
        const api = operatorClient();
        const target = id !== undefined ? parseId(id) : await activeRollout(api);
        const changed = await api.changeRollout(target, action);
        out(flags.json ? JSON.stringify(changed, null, 2) : renderRollout(changed));
      });
  }
}

function parseId(value: string): number {
  const id = Number(value);
  if (!(Number.isInteger(id) && id > 0))
    throw new Error(`rollout id must be a positive integer, got ${JSON.stringify(value)}`);
  return id;
}

async function activeRollout(api: ReturnType<typeof operatorClient>): Promise<number> {
  const active = (await api.listRollouts()).rollouts.filter(
    (r) => r.state === "running" || r.state === "paused",
  );
  if (active.length === 1) return active[0]!.id;
  if (active.length === 0) throw new Error("no rollout is running or paused");
  throw new Error(
    `${active.length} rollouts are running or paused (${active.map((r) => r.id).join(", ")}): give the id`,
  );
}

function headline(r: Rollout): string {
  const selector = Object.entries(r.selector)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  const why = r.state === "paused" && r.stop?.kind === "gate-failed" ? " (gate failed)" : "";
  return `rollout ${r.id}: ${r.chain} v${r.version} to ${selector}: ${r.state}${why}, phase ${r.phase + 1}/${r.phases.length}`;
}

/** The human view of a rollout: what it is, why it stopped, each device, the last steps. */
export function renderRollout(r: Rollout): string {
  const lines = [headline(r)];
  lines.push(
    `  phases ${r.phases.map((p) => `${p.spec} (${p.devices})`).join(", ")}; soak ${r.soakSeconds}s; offline ${r.offline}; gate ${r.gate}`,
  );
  if (r.stop) lines.push(`  ${r.stop.kind === "gate-failed" ? "stopped" : r.stop.kind}: ${r.stop.message}`);
  const rows = r.devices.map((d) => [
    d.name,
    String(d.phase + 1),
    d.state,
    d.ran ? `${d.ran.chain} v${d.ran.version}` : "-",
    [d.note, d.failed.length ? `failing: ${d.failed.map(formatGateTerm).join(", ")}` : null]
      .filter(Boolean)
      .join("; ") || "-",
  ]);
  const header = ["DEVICE", "PHASE", "STATE", "RAN BEFORE", "NOTE"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  for (const row of [header, ...rows])
    lines.push(`  ${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")}`);
  const recent = r.events.slice(-8);
  if (recent.length) {
    lines.push("  steps:");
    for (const e of recent) lines.push(`    ${e.at}  ${e.message}`);
  }
  return lines.join("\n");
}
