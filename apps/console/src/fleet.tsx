import type { DeviceSummary, NfCounters } from "@galette/protocol";
import { Fragment, useEffect, useRef, useState } from "react";
import { api, subscribeEvents } from "./api";
import { href } from "./router";

/** One NF counter with its rate since the previous report (per second). */
export interface CounterRow {
  name: string;
  value: number;
  rate: number | null;
}

interface Fleet {
  devices: DeviceSummary[];
  /** device → NF uuid → counter name → rate/s between its last two reports */
  rates: Map<string, Map<string, Map<string, number>>>;
  updatedAt: number | null;
  error: string;
}

/**
 * The fleet as the controller's event stream tells it: a snapshot on connect and every few
 * seconds, a device as soon as it reports. Counter rates come from consecutive reports.
 */
export function useFleet(onSessionEnd: () => void): Fleet {
  const [fleet, setFleet] = useState<Fleet>({ devices: [], rates: new Map(), updatedAt: null, error: "" });
  const previous = useRef(new Map<string, { at: number; counters: NfCounters[] }>());
  useEffect(() => {
    /** Rates between a device's consecutive reports (snapshots only seed the first sample). */
    const rateOf = (device: DeviceSummary, now: number, report: boolean) => {
      const before = previous.current.get(device.name);
      if (!before || report) previous.current.set(device.name, { at: now, counters: device.counters });
      if (!before || !report) return undefined;
      const seconds = Math.max((now - before.at) / 1000, 0.001);
      const rates = new Map<string, Map<string, number>>();
      for (const nf of device.counters) {
        const old = before.counters.find((c) => c.uuid === nf.uuid);
        const perNf = new Map<string, number>();
        for (const [name, value] of Object.entries(nf.counters)) {
          const was = old?.counters[name];
          if (was !== undefined && value >= was) perNf.set(name, (value - was) / seconds);
        }
        rates.set(nf.uuid, perNf);
      }
      return rates;
    };
    const close = subscribeEvents(
      (event) => {
        // Rates are worked out here, once per event, not in the state updater (React may run that twice).
        const now = Date.now();
        const incoming = event.type === "devices" ? event.devices : [event.device];
        const newRates = new Map<string, Map<string, Map<string, number>>>();
        for (const d of incoming) {
          const r = rateOf(d, now, event.type === "device");
          if (r) newRates.set(d.name, r);
        }
        setFleet((f) => {
          const byName = new Map(
            (event.type === "devices" ? [] : f.devices).map((d) => [d.name, d] as [string, DeviceSummary]),
          );
          for (const d of incoming) byName.set(d.name, d);
          const rates = new Map([...f.rates, ...newRates]);
          const devices = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
          return { devices, rates, updatedAt: now, error: "" };
        });
      },
      () => {
        // EventSource retries by itself; if the session is gone, go back to the login.
        api
          .currentSession()
          .then((s) => {
            if (!s) onSessionEnd();
            else setFleet((f) => ({ ...f, error: "Live updates interrupted; reconnecting…" }));
          })
          .catch(() => setFleet((f) => ({ ...f, error: "Controller unreachable; reconnecting…" })));
      },
    );
    return close;
  }, [onSessionEnd]);
  return fleet;
}

const chainText = (d: DeviceSummary) =>
  d.installed ? `${d.installed.chain} v${d.installed.version}` : d.assigned ? "not installed" : "none";

/** The probe's findings in a few words (the device page has them all): XDP mode, AF_XDP, bpf_loop, problems. */
export const capabilitiesText = (d: DeviceSummary): string => {
  const c = d.capabilities;
  if (!c) return "—";
  const parts = [`XDP ${c.interfaces[0]?.xdp ?? "none"}`];
  if (c.afXdp) parts.push("AF_XDP");
  if (c.bpfLoop) parts.push("bpf_loop");
  if (c.problems.length > 0) parts.push(`${c.problems.length} problem${c.problems.length === 1 ? "" : "s"}`);
  return parts.join(" · ");
};

const assignedText = (d: DeviceSummary) =>
  d.assigned ? `${d.assigned.chain} ${d.assigned.version ? `v${d.assigned.version}` : "(latest)"}` : "—";

export function FleetPage({ fleet }: { fleet: Fleet }) {
  return (
    <section aria-labelledby="fleet-title">
      <h1 id="fleet-title" tabIndex={-1}>
        Fleet
      </h1>
      <p className="hint" aria-live="polite">
        {fleet.devices.length} device{fleet.devices.length === 1 ? "" : "s"},{" "}
        {fleet.devices.filter((d) => d.online).length} online
        {fleet.updatedAt ? ` · updated ${new Date(fleet.updatedAt).toLocaleTimeString()}` : " · connecting…"}
      </p>
      <div className="table-wrap">
        <table className="fleet">
          <caption className="sr-only">Devices, their chain and state</caption>
          <thead>
            <tr>
              <th scope="col">Device</th>
              <th scope="col">Online</th>
              <th scope="col">Chain</th>
              <th scope="col">Assigned</th>
              <th scope="col">State</th>
              <th scope="col">Errors</th>
              <th scope="col">Arch</th>
              <th scope="col">Kernel</th>
              <th scope="col">Agent</th>
              <th scope="col">Capabilities</th>
            </tr>
          </thead>
          <tbody>
            {fleet.devices.map((d) => (
              <tr key={d.name} data-device={d.name}>
                <th scope="row" data-label="Device">
                  <a href={href.device(d.name)}>{d.name}</a>
                  {d.revokedAt && <span className="badge bad">revoked</span>}
                </th>
                <td data-label="Online">
                  <span className={`dot ${d.online ? "ok" : "off"}`} aria-hidden="true" />
                  {d.online ? "online" : d.lastSeenAt ? "offline" : "never seen"}
                </td>
                <td data-label="Chain" data-testid="installed">
                  {d.installed ? (
                    <a href={href.chain(d.installed.chain, d.installed.version)}>{chainText(d)}</a>
                  ) : (
                    chainText(d)
                  )}
                </td>
                <td data-label="Assigned">{assignedText(d)}</td>
                <td data-label="State">
                  <span className={`badge state-${d.state ?? "unknown"}`}>{d.state ?? "unknown"}</span>
                </td>
                <td data-label="Errors">
                  {d.refusal && (
                    <span className="error-text">
                      not sent {d.refusal.chain} v{d.refusal.version}: {d.refusal.reasons.join("; ")}
                      {d.errors.length > 0 ? " · " : ""}
                    </span>
                  )}
                  {d.rollback && (
                    <span className="error-text">
                      rolled back {d.rollback.chain} v{d.rollback.version}: {d.rollback.reason}
                      {d.errors.length > 0 ? " · " : ""}
                    </span>
                  )}
                  {d.errors.length === 0 ? (
                    d.refusal || d.rollback ? null : (
                      "none"
                    )
                  ) : (
                    <span className="error-text" title={d.errors.map((e) => e.message).join("\n")}>
                      {d.errors.length > 1 ? `${d.errors.length} errors, last: ` : ""}
                      {d.errors[d.errors.length - 1]!.message}
                    </span>
                  )}
                </td>
                <td data-label="Arch">{d.arch ?? "—"}</td>
                <td data-label="Kernel">{d.kernelVersion ?? "—"}</td>
                <td data-label="Agent">{d.agentVersion ?? "—"}</td>
                <td data-label="Capabilities">{capabilitiesText(d)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {fleet.devices.length === 0 && fleet.updatedAt && (
        <p className="empty">No devices enrolled yet (galette device enrol NAME).</p>
      )}
    </section>
  );
}

export function DevicePage({ name, fleet }: { name: string; fleet: Fleet }) {
  const device = fleet.devices.find((d) => d.name === name);
  if (!device) {
    return (
      <section>
        <h1 tabIndex={-1}>{name}</h1>
        <p>{fleet.updatedAt ? "No such device." : "Loading…"}</p>
        <a href={href.fleet()}>Back to the fleet</a>
      </section>
    );
  }
  const rates = fleet.rates.get(name);
  return (
    <section aria-labelledby="device-title">
      <p className="crumbs">
        <a href={href.fleet()}>Fleet</a> /
      </p>
      <h1 id="device-title" tabIndex={-1}>
        {device.name}
      </h1>
      <dl className="facts">
        <dt>Online</dt>
        <dd>{device.online ? "yes" : "no"}</dd>
        <dt>State</dt>
        <dd>{device.state ?? "unknown"}</dd>
        <dt>Installed</dt>
        <dd>
          {device.installed ? (
            <a href={href.chain(device.installed.chain, device.installed.version)}>{chainText(device)}</a>
          ) : (
            chainText(device)
          )}
        </dd>
        <dt>Assigned</dt>
        <dd>
          {assignedText(device)}
          {device.assignedBy
            ? ` (${device.assignedBy.kind === "selector" ? "by selector" : "directly"})`
            : ""}
        </dd>
        <dt>Labels</dt>
        <dd>
          {Object.entries(device.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(", ") || "none"}
        </dd>
        <dt>Arch / kernel</dt>
        <dd>
          {device.arch ?? "—"} / {device.kernelVersion ?? "—"}
          {device.triple ? ` (${device.triple})` : ""}
        </dd>
        <dt>Agent</dt>
        <dd>{device.agentVersion ?? "—"}</dd>
        <dt>Last seen</dt>
        <dd>{device.lastSeenAt ? new Date(device.lastSeenAt).toLocaleString() : "never"}</dd>
        <dt>Certificate</dt>
        <dd>
          serial {device.serial}, valid until {new Date(device.notAfter).toLocaleDateString()}
          {device.revokedAt ? `, revoked ${device.revokedAt}` : ""}
        </dd>
      </dl>

      {device.refusal && (
        <p className="error" role="note">
          The controller does not send {device.refusal.chain} v{device.refusal.version} to this device:{" "}
          {device.refusal.reasons.join("; ")}
        </p>
      )}
      {device.rollback && (
        <p className="error" role="note">
          Rolled back {device.rollback.chain} v{device.rollback.version} ({device.rollback.reason}); restored{" "}
          {device.rollback.restored
            ? `${device.rollback.restored.chain} v${device.rollback.restored.version}`
            : "nothing"}
          . It is held until galette device confirm {device.name}.
        </p>
      )}

      <h2>Capabilities</h2>
      {device.capabilities ? (
        <dl className="facts">
          <dt>Probed</dt>
          <dd>{new Date(device.capabilities.probedAt).toLocaleString()}</dd>
          <dt>Kernel</dt>
          <dd>
            {device.capabilities.kernelRelease}, BTF {device.capabilities.btf ? "yes" : "no"}, bpf_loop{" "}
            {device.capabilities.bpfLoop ? "yes" : "no"}, tail calls{" "}
            {device.capabilities.tailCalls ? "yes" : "no"}, AF_XDP {device.capabilities.afXdp ? "yes" : "no"}
          </dd>
          <dt>CPU / memory</dt>
          <dd>
            {device.capabilities.cpus} CPUs, {Math.round(device.capabilities.availableMemoryBytes / 2 ** 20)}{" "}
            of {Math.round(device.capabilities.memoryBytes / 2 ** 20)} MiB available
          </dd>
          <dt>Map types</dt>
          <dd>{device.capabilities.mapTypes.join(", ") || "none"}</dd>
          {device.capabilities.interfaces.map((i) => (
            <Fragment key={i.name}>
              <dt>Interface {i.name}</dt>
              <dd>
                XDP {i.xdp}, {i.rxQueues} RX queue{i.rxQueues === 1 ? "" : "s"}, zero-copy{" "}
                {i.zeroCopy === null ? "unknown" : i.zeroCopy ? "yes" : "no"}
                {i.problems.length > 0 ? ` — ${i.problems.join("; ")}` : ""}
              </dd>
            </Fragment>
          ))}
          {device.capabilities.problems.length > 0 && (
            <>
              <dt>Problems</dt>
              <dd>{device.capabilities.problems.join("; ")}</dd>
            </>
          )}
        </dl>
      ) : (
        <p>Not reported by this agent.</p>
      )}

      <h2>Errors</h2>
      {device.errors.length === 0 ? (
        <p>None reported.</p>
      ) : (
        <ul className="errors">
          {device.errors.map((e) => (
            <li key={`${e.at}-${e.message}`}>
              <time dateTime={e.at}>{new Date(e.at).toLocaleTimeString()}</time> {e.message}
            </li>
          ))}
        </ul>
      )}

      <h2 id="counters-title">Counters</h2>
      <p className="hint">As the agent reports them (every status interval); rates between two reports.</p>
      {device.counters.length === 0 ? (
        <p>No counters reported.</p>
      ) : (
        <section className="counters" aria-labelledby="counters-title">
          {device.counters.map((nf) => (
            <table key={nf.uuid} className="counter-table" data-nf={nf.instance ?? nf.uuid}>
              <caption>{nf.instance ?? nf.uuid}</caption>
              <thead>
                <tr>
                  <th scope="col">Counter</th>
                  <th scope="col">Total</th>
                  <th scope="col">Per second</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(nf.counters).map(([counter, value]) => {
                  const rate = rates?.get(nf.uuid)?.get(counter);
                  return (
                    <tr key={counter} data-counter={counter}>
                      <th scope="row">{counter}</th>
                      <td className="num" data-value={value}>
                        {value.toLocaleString()}
                      </td>
                      <td className="num" data-rate={rate ?? ""}>
                        {rate === undefined ? "—" : rate.toFixed(1)}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          ))}
        </section>
      )}

      <h2 id="cost-title">Cost</h2>
      <CostTable device={device} />
    </section>
  );
}

/** Per-NF cost from the agent's last measuring window (kernel bpf_stats, worker timing). */
function CostTable({ device }: { device: DeviceSummary }) {
  const cost = device.cost;
  if (!cost) return <p>Not measured yet.</p>;
  const ns = (n: number | undefined) => (n === undefined ? "—" : `${n.toFixed(0)} ns`);
  return (
    <>
      <p className="hint">
        XDP path (every XDP NF together): {ns(cost.xdp.nsPerRun)} per frame over{" "}
        {cost.xdp.runCount.toLocaleString()} frames, {cost.windowMs} ms window at{" "}
        {new Date(cost.measuredAt).toLocaleTimeString()}.
      </p>
      <table className="counter-table" aria-labelledby="cost-title">
        <thead>
          <tr>
            <th scope="col">NF</th>
            <th scope="col">Placement</th>
            <th scope="col">XDP frames (window)</th>
            <th scope="col">Userland calls</th>
            <th scope="col">Userland per call</th>
          </tr>
        </thead>
        <tbody>
          {cost.nfs.map((n) => (
            <tr key={n.uuid} data-nf={n.instance ?? n.uuid}>
              <th scope="row">{n.instance ?? n.uuid}</th>
              <td>{n.placement}</td>
              <td className="num">{n.xdpRuns.toLocaleString()}</td>
              <td className="num">{n.userlandCalls.toLocaleString()}</td>
              <td className="num">{ns(n.userlandNsPerCall)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
