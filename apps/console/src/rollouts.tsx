import { useEffect, useState } from "react";
import { type RolloutView, rollouts } from "./api";

/**
 * Staged rollouts: each rollout's phases, and per phase the gate's verdict for each device.
 * Empty until the controller offers a rollout API (see `rollouts` in api.ts).
 */
export function RolloutsPage() {
  const [list, setList] = useState<RolloutView[] | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    rollouts
      .list()
      .then(setList)
      .catch((err: Error) => setError(err.message));
  }, []);
  return (
    <section aria-labelledby="rollouts-title">
      <h1 id="rollouts-title" tabIndex={-1}>
        Rollouts
      </h1>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {list && list.length === 0 && (
        <div className="empty">
          <p>No rollouts.</p>
          <p className="hint">
            {rollouts.available
              ? "Start one with galette rollout start CHAIN --to SELECTOR."
              : "This controller does not offer staged rollouts yet; chains reach devices through galette chain assign."}
          </p>
        </div>
      )}
      {list?.map((r) => (
        <article key={r.id} className="rollout" aria-labelledby={`rollout-${r.id}`}>
          <h2 id={`rollout-${r.id}`}>
            {r.chain} v{r.version} <span className="badge">{r.state}</span>
          </h2>
          <p>
            Gate: <code>{r.gate}</code>
          </p>
          <ol className="phases">
            {r.phases.map((p, i) => (
              <li key={`${r.id}-${p.size}`} className={`phase phase-${p.state}`}>
                <h3>
                  Phase {i + 1}: {p.size} <span className="badge">{p.state}</span>
                </h3>
                <ul>
                  {p.devices.map((d) => (
                    <li key={d.name} className={`gate-${d.gate}`}>
                      {d.name}: {d.gate}
                      {d.reason ? ` (${d.reason})` : ""}
                    </li>
                  ))}
                </ul>
              </li>
            ))}
          </ol>
        </article>
      ))}
    </section>
  );
}
