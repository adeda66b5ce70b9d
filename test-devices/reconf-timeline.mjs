/**
 * The live reconfiguration step's timeline for run.sh, on the host's clock (the device sets
 * its clock from the host's at boot, device.sh): when the controller took the pushed version
 * (its request log), what the agent logged while applying it (notified, received, verified,
 * downloads, the dataplane's switch, applied with its phase durations), and when this machine
 * saw the device converged. Writes {pushedAt, appliedAt, phases} (epoch ms) to OUT_JSON;
 * exits 1 when the agent's log has no applied line for VERSION.
 * usage: node reconf-timeline.mjs AGENT_LOG CONTROLLER_LOG CHAIN VERSION STARTED DONE OUT_JSON
 */
import { readFileSync, writeFileSync } from "node:fs";

const [agentLog, controllerLog, chain, versionArg, startedArg, doneArg, out] = process.argv.slice(2);
if (!out)
  throw new Error("usage: reconf-timeline.mjs AGENT_LOG CONTROLLER_LOG CHAIN VERSION STARTED DONE OUT_JSON");
const version = Number(versionArg);
const t0 = Number(startedArg) * 1000;
const done = Number(doneArg) * 1000;

const lines = (file) =>
  readFileSync(file, "utf8")
    .split("\n")
    .flatMap((line) => {
      try {
        const l = JSON.parse(line);
        // (a few seconds of slack at the end: the device's clock may run a little ahead)
        return typeof l.time === "number" && l.time >= t0 && l.time <= done + 5000 ? [l] : [];
      } catch {
        return [];
      }
    });

const events = [];
const pushed = lines(controllerLog).find(
  (l) => l.msg === "incoming request" && l.req?.method === "POST" && l.req?.url === "/v1/chains",
);
if (pushed) events.push({ time: pushed.time, what: "the controller takes the push (POST /v1/chains)" });

const want =
  /^(controller says|assignment (received|verified|applied)|reconfiguring the dataplane|chain reconfigured|artifact downloaded|workers started)/;
let applied;
for (const l of lines(agentLog)) {
  if (!want.test(l.msg)) continue;
  if (l.version !== undefined && (l.chain !== chain || l.version !== version)) continue;
  const {
    time,
    level,
    pid,
    hostname,
    name,
    msg,
    component,
    iface,
    chain: _c,
    version: _v,
    etag,
    ...rest
  } = l;
  if (typeof rest.digest === "string") rest.digest = rest.digest.slice(0, 12);
  const detail = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : "";
  events.push({ time, what: `agent: ${msg}${detail}` });
  if (/^assignment applied/.test(msg)) applied = l;
}
events.push({
  time: done,
  what: `this machine sees the device converged on v${version}`,
});
events.sort((a, b) => a.time - b.time);
console.log("  timeline (the device's clock is set from this machine's at boot):");
console.log(`    +${"0.0".padStart(6)} s  galette chain push (CLI started)`);
for (const e of events) console.log(`    +${((e.time - t0) / 1000).toFixed(1).padStart(6)} s  ${e.what}`);
writeFileSync(
  out,
  JSON.stringify({
    pushedAt: pushed?.time ?? null,
    appliedAt: applied?.time ?? null,
    phases: applied?.phases ?? null,
  }),
);
if (!applied) {
  console.error(`  the agent's log has no "assignment applied" line for ${chain} v${version}`);
  process.exit(1);
}
