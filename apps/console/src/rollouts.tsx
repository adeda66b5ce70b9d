import type { Rollout, RolloutDevice, RolloutGateTerm } from "@galette/protocol";
import { useCallback, useEffect, useState } from "react";
import { rollouts } from "./api";
import { href } from "./router";

/** How often the page asks again while it is open (a soak is seconds to hours). */
const REFRESH_MS = 5000;

export type PhaseStatus = "done" | "in progress" | "paused" | "stopped" | "pending";

/** Where phase `index` of `r` stands: phases before the current one are done. */
export function phaseStatus(r: Pick<Rollout, "state" | "phase">, index: number): PhaseStatus {
  if (index < r.phase) return "done";
  if (index > r.phase) return "pending";
  switch (r.state) {
    case "completed":
      return "done";
    case "running":
      return "in progress";
    case "paused":
      return "paused";
    case "aborted":
      return "stopped";
  }
}

/** A gate term that failed, with the values it read: `aborts == 0 (aborts=812)`. */
export function gateTermText(t: RolloutGateTerm): string {
  const values = Object.entries(t.values)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(", ");
  return values ? `${t.term} (${values})` : t.term;
}

function gateText(d: RolloutDevice): string {
  if (d.failed.length > 0) return `failed: ${d.failed.map(gateTermText).join("; ")}`;
  if (d.state === "passed") return "held";
  return "—";
}

const selectorText = (s: Record<string, string>) =>
  Object.entries(s)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");

const time = (iso: string | null) => (iso ? new Date(iso).toLocaleTimeString() : "—");

/**
 * Staged rollouts: each rollout's phases with the devices each reached, their state and the
 * gate's verdict, why a stopped rollout stopped, and its steps. Refreshed every few seconds.
 */
export function RolloutsPage() {
  const [list, setList] = useState<Rollout[] | null>(null);
  const [error, setError] = useState("");
  const [updatedAt, setUpdatedAt] = useState<number | undefined>(undefined);
  const load = useCallback(() => {
    rollouts
      .list()
      .then((l) => {
        setList(l);
        setError("");
        setUpdatedAt(Date.now());
      })
      .catch((err: Error) => setError(`cannot list rollouts: ${err.message}`));
  }, []);
  useEffect(() => {
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => clearInterval(timer);
  }, [load]);
  return (
    <section aria-labelledby="rollouts-title">
      <h1 id="rollouts-title" tabIndex={-1}>
        Rollouts
      </h1>
      <p className="hint" aria-live="polite">
        {list ? `${list.length} rollout${list.length === 1 ? "" : "s"}` : "Loading…"}
        {updatedAt ? ` · updated ${new Date(updatedAt).toLocaleTimeString()}` : ""}{" "}
        <button type="button" onClick={load}>
          Refresh
        </button>
      </p>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {list && list.length === 0 && (
        <div className="empty">
          <p>No rollouts.</p>
          <p className="hint">
            Start one with <code>galette rollout start CHAIN --to SELECTOR --phases 1,100% --gate GATE</code>.
          </p>
        </div>
      )}
      {list?.map((r) => (
        <RolloutCard key={r.id} r={r} />
      ))}
    </section>
  );
}

function RolloutCard({ r }: { r: Rollout }) {
  const title = `rollout-${r.id}`;
  return (
    <article className="rollout" aria-labelledby={title} data-rollout={r.id}>
      <h2 id={title}>
        #{r.id} <a href={href.chain(r.chain, r.version)}>{`${r.chain} v${r.version}`}</a>{" "}
        <span className={`badge rollout-${r.state}`} data-testid="rollout-state">
          {r.state}
        </span>
      </h2>
      <dl className="rollout-meta">
        <dt>Devices</dt>
        <dd>
          <code>{selectorText(r.selector)}</code>
        </dd>
        <dt>Gate</dt>
        <dd>
          <code>{r.gate}</code> after a {r.soakSeconds} s soak; offline devices: {r.offline}
        </dd>
        <dt>Started</dt>
        <dd>
          {new Date(r.createdAt).toLocaleString()} by {r.createdBy}
        </dd>
      </dl>
      {r.stop && (
        <p className={r.stop.kind === "gate-failed" ? "error" : "hint"} data-testid="rollout-stop">
          Stopped ({r.stop.kind}): {r.stop.message}
        </p>
      )}
      <ol className="phases">
        {r.phases.map((p, i) => {
          const status = phaseStatus(r, i);
          const devices = r.devices.filter((d) => d.phase === i);
          const caption = `Phase ${i + 1} of rollout #${r.id}: ${p.spec}`;
          return (
            // biome-ignore lint/suspicious/noArrayIndexKey: phases are positional and never reordered
            <li key={i} className={`phase phase-${status.replace(" ", "-")}`} data-phase={i + 1}>
              <h3>
                Phase {i + 1}: {p.spec} ({p.devices} device{p.devices === 1 ? "" : "s"} once done){" "}
                <span className="badge">{status}</span>
              </h3>
              {devices.length === 0 ? (
                <p className="hint">No device reached yet.</p>
              ) : (
                <div className="table-wrap">
                  <table className="rollout-devices">
                    <caption className="sr-only">{caption}</caption>
                    <thead>
                      <tr>
                        <th scope="col">Device</th>
                        <th scope="col">State</th>
                        <th scope="col">Ran before</th>
                        <th scope="col">Installed</th>
                        <th scope="col">Soak ends</th>
                        <th scope="col">Gate</th>
                      </tr>
                    </thead>
                    <tbody>
                      {devices.map((d) => (
                        <tr key={d.name} data-device={d.name}>
                          <th scope="row">
                            <a href={href.device(d.name)}>{d.name}</a>
                          </th>
                          <td>
                            <span className="badge">{d.state}</span>
                            {d.note ? <span className="hint"> {d.note}</span> : null}
                          </td>
                          <td>
                            {d.ran
                              ? `${d.ran.chain} v${d.ran.version}`
                              : d.state === "pending"
                                ? "—"
                                : "nothing"}
                          </td>
                          <td>{time(d.installedAt)}</td>
                          <td>{time(d.soakEndsAt)}</td>
                          <td
                            className={
                              d.failed.length ? "gate-fail" : d.state === "passed" ? "gate-pass" : ""
                            }
                          >
                            {gateText(d)}
                          </td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
            </li>
          );
        })}
      </ol>
      <details>
        <summary>Steps ({r.events.length})</summary>
        <ol className="rollout-events">
          {r.events.map((e, i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: the log is append-only
            <li key={i}>
              <time dateTime={e.at}>{new Date(e.at).toLocaleTimeString()}</time> {e.message}
            </li>
          ))}
        </ol>
      </details>
    </article>
  );
}
