import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import {
  type Chain,
  type ChainPlan,
  checkNfInterfaces,
  type Diagnostic,
  formatDiagnostic,
  hasErrors,
  loadChainFile,
  type NfInterface,
  planChain,
  sortDiagnostics,
  withAttributeMaps,
} from "@galette/chain";
import { type DevicePlanResponse, MAX_GRACE_SECONDS } from "@galette/protocol";
import type { Command } from "commander";
import { client as operatorClient, parseLabels } from "./controller";
import { signAndPushChain } from "./release";

/**
 * Seam for the NF compiler: given a valid chain, return the interface (Action variants,
 * #[maps] fields) of each NF instance it could analyse, plus the analyser's own
 * diagnostics (e.g. a crate that does not parse). When absent, `chain validate` checks
 * structure only and says so.
 */
export type ResolveInterfaces = (
  chain: Chain,
) => Promise<{ interfaces: Map<string, NfInterface>; diagnostics: Diagnostic[] }>;

export interface ChainCommandOptions {
  resolveInterfaces?: ResolveInterfaces;
}

const out = (text: string) => process.stdout.write(`${text}\n`);

export function registerChainCommands(program: Command, options: ChainCommandOptions = {}): void {
  const chain = program
    .command("chain")
    .description("Validate and plan chain files (TOML); push and assign them through the controller");
  registerFleetCommands(chain);

  chain
    .command("validate")
    .description("Check chain files; prints `FILE: ok` or compiler-style errors (exit 1 on any error)")
    .argument("<files...>", "chain TOML files")
    .option("--structure-only", "check only the chain file itself, not the NF crates it names")
    .option("--json", "print the diagnostics as JSON")
    .action(async (files: string[], flags: { structureOnly?: boolean; json?: boolean }) => {
      const resolve = flags.structureOnly ? undefined : options.resolveInterfaces;
      const results: Array<{ file: string; ok: boolean; diagnostics: Diagnostic[] }> = [];
      for (const file of files) {
        const parsed = await loadChainFile(file);
        let diagnostics = parsed.diagnostics;
        if (parsed.chain && resolve) {
          const resolved = await resolve(parsed.chain);
          diagnostics = sortDiagnostics([
            ...diagnostics,
            ...resolved.diagnostics,
            ...checkNfInterfaces(parsed.chain, resolved.interfaces),
          ]);
        }
        results.push({ file, ok: !hasErrors(diagnostics), diagnostics });
      }
      const ok = results.every((r) => r.ok);
      if (flags.json) {
        out(JSON.stringify({ ok, files: results }, null, 2));
      } else {
        for (const r of results) {
          for (const d of r.diagnostics) out(formatDiagnostic(d));
          out(`${r.file}: ${r.ok ? "ok" : "failed"}${summary(r.diagnostics)}`);
        }
        if (!flags.structureOnly && !resolve) {
          out(
            "note: NF arity and map checks against the NF crates need the NF compiler; checked chain structure only",
          );
        }
      }
      if (!ok) process.exitCode = 1;
    });

  chain
    .command("plan")
    .description("Show where each NF runs (XDP or userland), its UUID, maps and next hops")
    .argument("<file>", "chain TOML file")
    .option("--json", "print the plan as JSON")
    .option(
      "--device <name>",
      "plan it for this device through the controller: checked against the capabilities its agent reported",
    )
    .action(async (file: string, flags: { json?: boolean; device?: string }) => {
      if (flags.device) {
        const toml = await readFile(file, "utf8");
        const planned = await operatorClient().planForDevice(flags.device, { file: basename(file), toml });
        if (flags.json) out(JSON.stringify(planned, null, 2));
        else out(renderDevicePlan(planned));
        if (planned.refusals.length > 0) process.exitCode = 1;
        return;
      }
      const parsed = await loadChainFile(file);
      if (!parsed.chain) {
        if (flags.json) {
          const errors = parsed.diagnostics.filter((d) => d.severity === "error");
          const warnings = parsed.diagnostics.filter((d) => d.severity !== "error");
          out(JSON.stringify({ chain: null, errors, warnings }, null, 2));
        } else {
          for (const d of parsed.diagnostics) out(formatDiagnostic(d));
          out(`${file}: failed${summary(parsed.diagnostics)}`);
        }
        process.exitCode = 1;
        return;
      }
      // owned maps the chain omits come from the crates' #[map(type, size)], as when it is built
      const resolved = await options.resolveInterfaces?.(parsed.chain);
      const complete = resolved ? withAttributeMaps(parsed.chain, resolved.interfaces) : parsed.chain;
      const plan = planChain(complete, { warnings: parsed.diagnostics });
      out(flags.json ? JSON.stringify(plan, null, 2) : renderPlan(plan));
    });
}

/** `chain push` / `chain assign`: the operator side of the controller (credentials: docs/operator-guide.md). */
function registerFleetCommands(chain: Command): void {
  chain
    .command("push")
    .description("Store a chain file on the controller as a new version (validated against published NFs)")
    .argument("<file>", "chain TOML file")
    .option("--name <name>", "chain name (default: [chain] name, else the file name)")
    .option("--json", "print the controller's answer as JSON")
    .option("--key <file>", "release.key: sign the version (devices load only signed versions)")
    .action(async (file: string, flags: { name?: string; json?: boolean; key?: string }) => {
      const toml = await readFile(file, "utf8");
      const request = { name: flags.name, file: basename(file), toml };
      const pushed = flags.key
        ? await signAndPushChain(operatorClient(), request, flags.key)
        : await operatorClient().pushChain(request);
      if (flags.json) {
        out(JSON.stringify(pushed, null, 2));
        return;
      }
      for (const w of pushed.warnings) out(`warning: ${w}`);
      out(`pushed ${pushed.name} version ${pushed.version} (${pushed.nfs.length} NF instances)`);
      if (pushed.notified.length) out(`notified: ${pushed.notified.join(", ")}`);
    });

  chain
    .command("assign")
    .description("Give a chain to devices by name and/or by label selector")
    .argument("<chain>", "chain name")
    .option("--devices <names>", "comma-separated device names")
    .option("--selector <labels>", "k=v,... : every device whose labels include all of them")
    .option("--version <n>", "pin a version (default: follow the latest push)")
    .option(
      "--grace <duration>",
      "dead-man's switch: how long a device has to reach the controller after installing it (30s, 2m; 0 = off; default 60s)",
    )
    .action(
      async (
        name: string,
        flags: { devices?: string; selector?: string; version?: string; grace?: string },
      ) => {
        const devices = flags.devices
          ?.split(",")
          .map((d) => d.trim())
          .filter(Boolean);
        const selector = flags.selector ? parseLabels(flags.selector) : undefined;
        const version = flags.version === undefined ? undefined : Number(flags.version);
        if (version !== undefined && !(Number.isInteger(version) && version > 0)) {
          throw new Error(`--version must be a positive integer, got ${JSON.stringify(flags.version)}`);
        }
        const graceSeconds = flags.grace === undefined ? undefined : parseGrace(flags.grace);
        const assigned = await operatorClient().assignChain({
          chain: name,
          version,
          devices,
          selector,
          ...(graceSeconds !== undefined ? { graceSeconds } : {}),
        });
        out(
          `assigned ${assigned.chain}${assigned.version ? ` version ${assigned.version}` : " (latest)"} to ${
            assigned.assigned.length ? assigned.assigned.join(", ") : "no device"
          }`,
        );
        if (assigned.rule) {
          out(
            `rule ${assigned.rule.id}: devices labelled ${formatLabels(assigned.rule.selector)} follow it, also ones enrolled later`,
          );
        }
        if (assigned.overridden?.length) {
          out(
            `kept their own assignment (unassign --devices to let the rule apply): ${assigned.overridden.join(", ")}`,
          );
        }
        // Devices whose capabilities the chain does not fit keep what they run.
        for (const r of assigned.refused ?? [])
          for (const reason of r.reasons) out(`refused for ${r.device}: ${reason}`);
        if (assigned.refused?.length) process.exitCode = 1;
      },
    );

  chain
    .command("unassign")
    .description("Remove a selector rule and/or devices' own assignments (they fall back to matching rules)")
    .option("--devices <names>", "comma-separated device names whose explicit assignment is removed")
    .option("--selector <labels>", "k=v,... : the rule with exactly this selector is removed")
    .action(async (flags: { devices?: string; selector?: string }) => {
      const devices = flags.devices
        ?.split(",")
        .map((d) => d.trim())
        .filter(Boolean);
      const selector = flags.selector ? parseLabels(flags.selector) : undefined;
      const removed = await operatorClient().removeAssignment({ devices, selector });
      for (const rule of removed.removedRules) {
        out(`removed rule ${rule.id} (${formatLabels(rule.selector)} → ${rule.chain})`);
      }
      if (removed.cleared.length) out(`cleared own assignment of: ${removed.cleared.join(", ")}`);
      out(`changed: ${removed.changed.length ? removed.changed.join(", ") : "no device"}`);
    });
}

/** `30s`, `2m`, `1h`, `45` (seconds), `0` (off) → seconds. */
export function parseGrace(text: string): number {
  const m = /^(\d+)\s*(s|m|h)?$/.exec(text.trim());
  const seconds = m
    ? Number(m[1]) * ({ s: 1, m: 60, h: 3600 } as const)[(m[2] ?? "s") as "s" | "m" | "h"]
    : NaN;
  if (!Number.isInteger(seconds) || seconds > MAX_GRACE_SECONDS)
    throw new Error(
      `--grace ${JSON.stringify(text)}: give a duration such as 30s, 2m or 0 (off), at most ${MAX_GRACE_SECONDS / 60} minutes`,
    );
  return seconds;
}

/** `chain plan --device`: where each NF runs and whether the device takes the chain. */
export function renderDevicePlan(p: DevicePlanResponse): string {
  const c = p.capabilities;
  const lines = [
    c
      ? `chain ${p.chain} on ${p.device}: kernel ${c.kernelRelease}, XDP ${p.xdpMode ?? "?"}, AF_XDP ${c.afXdp ? "yes" : "no"}, bpf_loop ${c.bpfLoop ? "yes" : "no"}`
      : `chain ${p.chain} on ${p.device}: its agent has not reported capabilities yet (static limits only)`,
    table(
      ["NF", "CRATE", "XDP", "USERLAND"],
      p.nfs.map((nf) => [nf.instance, nf.nf, nf.xdp ? "yes" : "-", nf.userland ? "yes" : "-"]),
    ),
  ];
  for (const w of p.warnings) lines.push(`warning: ${w}`);
  if (p.refusals.length === 0) lines.push(`fits ${p.device}`);
  for (const r of p.refusals) lines.push(`refused for ${p.device}: ${r}`);
  return lines.join("\n");
}

function formatLabels(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

function summary(diagnostics: Diagnostic[]): string {
  const errors = diagnostics.filter((d) => d.severity === "error").length;
  const warnings = diagnostics.length - errors;
  const parts = [];
  if (errors) parts.push(`${errors} error${errors === 1 ? "" : "s"}`);
  if (warnings) parts.push(`${warnings} warning${warnings === 1 ? "" : "s"}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].map((l) => `  ${l}`).join("\n");
}

const entryText = (e: ChainPlan["entry"]): string => {
  const one = (x: { kind: string; target: string }) => `${x.target}${x.kind === "upcall" ? " (upcall)" : ""}`;
  return e.b ? `entry rx.a ${one(e)}, rx.b ${one(e.b)}` : `entry ${one(e)}`;
};

/** The human-readable plan: one row per NF, then maps and warnings. */
export function renderPlan(plan: ChainPlan): string {
  const yes = (b: boolean) => (b ? "yes" : "-");
  const lines: string[] = [];
  const xdpCount = plan.nfs.filter((n) => n.xdp).length;
  const userCount = plan.nfs.filter((n) => n.userland).length;
  lines.push(
    `chain ${plan.chain} (${plan.file}): ${plan.nfs.length} NFs, ${entryText(plan.entry)}, ` +
      `${xdpCount} in XDP, ${userCount} in userland, tail-call limit ${plan.maxTailCalls}`,
  );
  const rows = plan.nfs.map((nf) => {
    const hops = nf.next
      .map((_, action) => {
        const kinds = plan.edges
          .filter((e) => e.from === nf.name && e.action === action)
          .map((e) => (e.kind === "exit" ? "" : e.kind));
        const target =
          plan.edges.find((e) => e.from === nf.name && e.action === action)?.to ?? nf.next[action]!;
        const via = [...new Set(kinds.filter(Boolean))].join("|");
        return `${action}:${target}${via ? ` (${via})` : ""}`;
      })
      .join("  ");
    const maps = nf.maps.map((m) => `${m.name}${m.shared ? "*" : ""}`).join(",") || "-";
    return [nf.name, nf.uuid, yes(nf.xdp), yes(nf.userland), maps, hops || "-"];
  });
  lines.push(table(["NF", "UUID", "XDP", "USERLAND", "MAPS", "NEXT HOPS (action: target)"], rows));
  if (plan.maps.length > 0) {
    lines.push("maps (* = shared):");
    lines.push(
      table(
        ["MAP", "TYPE", "SIZE", "USED BY"],
        plan.maps.map((m) => [
          `${m.id}${m.shared ? "*" : ""}`,
          m.type,
          String(m.maxEntries),
          m.users.join(", "),
        ]),
      ),
    );
  }
  const why = plan.nfs.filter((n) => n.userland || !n.xdp);
  if (why.length > 0) {
    lines.push("userland placement:");
    for (const n of why) lines.push(`  ${n.name}: ${n.reasons.join("; ")}`);
  }
  if (plan.warnings.length > 0) {
    lines.push("warnings:");
    for (const w of plan.warnings) lines.push(formatDiagnostic(w).replace(/^/gm, "  "));
  }
  return lines.join("\n");
}
