import type { ChainVersionResponse, MapEntry, MapSpec } from "@galette/protocol";
import * as Tabs from "@radix-ui/react-tabs";
import { type FormEvent, useCallback, useEffect, useMemo, useState } from "react";
import { ApiError, api } from "./api";
import { type ChainLayout, type LaidOutNode, layoutChain, placementOf } from "./graph";
import { href } from "./router";
import { importReleaseKey, signMapEntries } from "./sign";

const PLACEMENT_TEXT = { xdp: "XDP", userland: "userland", both: "XDP + userland" } as const;

export function ChainPage({ name, version, canEdit }: { name: string; version?: number; canEdit: boolean }) {
  const [chain, setChain] = useState<ChainVersionResponse | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    setChain(null);
    setError("");
    api
      .chain(name, version)
      .then(setChain)
      .catch((err: Error) => setError(err.message));
  }, [name, version]);
  return (
    <section aria-labelledby="chain-title">
      <p className="crumbs">
        <a href={href.fleet()}>Fleet</a> /
      </p>
      <h1 id="chain-title" tabIndex={-1}>
        Chain {name}
        {chain ? ` v${chain.version}` : version ? ` v${version}` : ""}
      </h1>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {!chain && !error && <p>Loading…</p>}
      {chain && (
        <>
          <p className="hint">
            From {chain.file || "a chain file"}, pushed {new Date(chain.createdAt).toLocaleString()}.
            {chain.warnings.length > 0 && ` Warnings: ${chain.warnings.join("; ")}`}
          </p>
          <Tabs.Root defaultValue="graph" className="tabs">
            <Tabs.List aria-label="Chain views" className="tab-list">
              <Tabs.Trigger value="graph">Graph</Tabs.Trigger>
              <Tabs.Trigger value="actions">Action tables</Tabs.Trigger>
              <Tabs.Trigger value="maps">Maps ({chain.graph.maps.length})</Tabs.Trigger>
            </Tabs.List>
            <Tabs.Content value="graph">
              <ChainGraphView chain={chain} />
            </Tabs.Content>
            <Tabs.Content value="actions">
              <ActionTables chain={chain} />
            </Tabs.Content>
            <Tabs.Content value="maps">
              <Maps chain={chain} canEdit={canEdit} />
            </Tabs.Content>
          </Tabs.Root>
        </>
      )}
    </section>
  );
}

function useNarrow(): boolean {
  const query = "(max-width: 640px)";
  const [narrow, setNarrow] = useState(() => window.matchMedia(query).matches);
  useEffect(() => {
    const list = window.matchMedia(query);
    const onChange = () => setNarrow(list.matches);
    list.addEventListener("change", onChange);
    return () => list.removeEventListener("change", onChange);
  }, []);
  return narrow;
}

function nodeClass(n: LaidOutNode): string {
  if (n.kind === "nf") return `node nf ${n.placement}`;
  return `node ${n.kind} ${n.kind === "exit" ? `exit-${n.label}` : ""}`;
}

/** The graph as SVG (laid out by dagre), left to right, top to bottom on a narrow screen. */
function ChainGraphView({ chain }: { chain: ChainVersionResponse }) {
  const narrow = useNarrow();
  const layout: ChainLayout = useMemo(() => layoutChain(chain.graph, narrow ? "TB" : "LR"), [chain, narrow]);
  const describe = `${chain.graph.nfs.length} network functions: ${chain.graph.nfs
    .map((nf) => `${nf.instance} (${PLACEMENT_TEXT[placementOf(nf)]})`)
    .join(", ")}. The action tables tab lists every edge.`;
  return (
    <figure className="graph">
      <div className="graph-scroll">
        <svg
          role="img"
          aria-label={`Graph of chain ${chain.name} v${chain.version}`}
          aria-describedby="graph-desc"
          viewBox={`0 0 ${layout.width} ${layout.height}`}
          width={layout.width}
          height={layout.height}
          data-testid="chain-graph"
        >
          <defs>
            {(["tailcall", "upcall", "exit"] as const).map((k) => (
              <marker
                key={k}
                id={`arrow-${k}`}
                viewBox="0 0 10 10"
                refX="9"
                refY="5"
                markerWidth="7"
                markerHeight="7"
                orient="auto-start-reverse"
              >
                <path d="M 0 0 L 10 5 L 0 10 z" className={`arrowhead ${k}`} />
              </marker>
            ))}
          </defs>
          {layout.edges.map((e) => (
            <g key={e.id} className={`edge ${e.kind}`} data-edge={`${e.from}->${e.to}`}>
              <path
                d={`M ${e.points.map((p) => `${p.x} ${p.y}`).join(" L ")}`}
                markerEnd={`url(#arrow-${e.kind})`}
                fill="none"
              />
              {e.label && (
                <text x={e.labelAt.x} y={e.labelAt.y} textAnchor="middle" dominantBaseline="middle">
                  {e.label}
                </text>
              )}
            </g>
          ))}
          {layout.nodes.map((n) => (
            <g key={n.id} className={nodeClass(n)} data-node={n.label}>
              <rect
                x={n.x - n.width / 2}
                y={n.y - n.height / 2}
                width={n.width}
                height={n.height}
                rx={n.kind === "nf" ? 8 : 18}
              />
              <text x={n.x} y={n.kind === "nf" ? n.y - 6 : n.y} textAnchor="middle" dominantBaseline="middle">
                {n.label}
              </text>
              {n.kind === "nf" && (
                <text x={n.x} y={n.y + 12} textAnchor="middle" dominantBaseline="middle" className="sub">
                  {PLACEMENT_TEXT[n.placement!]}
                  {n.nf && n.nf !== n.label ? ` · ${n.nf}` : ""}
                </text>
              )}
            </g>
          ))}
        </svg>
      </div>
      <figcaption id="graph-desc">
        {describe}
        <span className="legend">
          <span className="key xdp">XDP</span>
          <span className="key userland">userland</span>
          <span className="key both">both</span>
          <span className="key line tailcall">tail call</span>
          <span className="key line upcall">upcall</span>
          <span className="key line exit">exit</span>
        </span>
      </figcaption>
    </figure>
  );
}

function ActionTables({ chain }: { chain: ChainVersionResponse }) {
  const instance = (uuid: string) => chain.graph.nfs.find((n) => n.uuid === uuid)?.instance ?? uuid;
  return (
    <div className="action-tables">
      <p>
        Entry: {chain.graph.entry.b ? "rx.a" : "rx"} → {instance(chain.graph.entry.target)} (
        {chain.graph.entry.kind})
      </p>
      {chain.graph.entry.b && (
        <p>
          Entry: rx.b → {instance(chain.graph.entry.b.target)} ({chain.graph.entry.b.kind})
        </p>
      )}
      {chain.graph.nfs.map((nf) => (
        <table key={nf.uuid}>
          <caption>
            {nf.instance} ({nf.nf}, {PLACEMENT_TEXT[placementOf(nf)]})
          </caption>
          <thead>
            <tr>
              <th scope="col">Action</th>
              <th scope="col">Kind</th>
              <th scope="col">Next</th>
            </tr>
          </thead>
          <tbody>
            {nf.actions.map((a) => (
              <tr key={a.variant}>
                <th scope="row">{a.variant}</th>
                <td>{a.kind}</td>
                <td>{"target" in a ? instance(a.target) : a.kind}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ))}
    </div>
  );
}

function Maps({ chain, canEdit }: { chain: ChainVersionResponse; canEdit: boolean }) {
  const [selected, setSelected] = useState(chain.graph.maps[0]?.id ?? "");
  const map = chain.graph.maps.find((m) => m.id === selected);
  if (chain.graph.maps.length === 0) return <p>This chain has no maps.</p>;
  return (
    <div className="maps">
      <label htmlFor="map-select">Map</label>
      <select id="map-select" value={selected} onChange={(e) => setSelected(e.target.value)}>
        {chain.graph.maps.map((m) => (
          <option key={m.id} value={m.id}>
            {m.id} ({m.type}, {m.keySize}-byte keys, {m.valueSize}-byte values, max {m.maxEntries})
          </option>
        ))}
      </select>
      {map && <MapEntries key={map.id} chain={chain.name} map={map} canEdit={canEdit} />}
    </div>
  );
}

const HEX = /^([0-9a-f]{2})*$/;

function MapEntries({ chain, map, canEdit }: { chain: string; map: MapSpec; canEdit: boolean }) {
  const [entries, setEntries] = useState<MapEntry[] | null>(null);
  const [error, setError] = useState("");
  const [status, setStatus] = useState("");
  const [key, setKey] = useState("");
  const [value, setValue] = useState("");
  const [keyFile, setKeyFile] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const load = useCallback(() => {
    api
      .mapEntries(chain, map.id)
      .then((r) => setEntries(r.entries))
      .catch((err: Error) => setError(err.message));
  }, [chain, map.id]);
  useEffect(load, [load]);

  const change = async (set: MapEntry[], remove: string[]) => {
    setBusy(true);
    setError("");
    setStatus("");
    try {
      let signed: Awaited<ReturnType<typeof signMapEntries>> | undefined;
      if (keyFile) {
        const releaseKey = await importReleaseKey(keyFile);
        const [current, previous] = await Promise.all([
          api.mapEntries(chain, map.id),
          api.signedMapEntries(chain, map.id),
        ]);
        signed = await signMapEntries(
          releaseKey,
          chain,
          map.id,
          current.entries,
          previous.signed?.document.seq ?? 0,
          set,
          remove,
        );
      }
      const result = await api.setMapEntries(chain, map.id, {
        set,
        delete: remove,
        ...(signed ? { signed } : {}),
      });
      setEntries(result.entries);
      setStatus(
        `Saved${signed ? ", signed" : " unsigned"}: ${result.entries.length} entr${result.entries.length === 1 ? "y" : "ies"}. Devices running ${chain} are told now.`,
      );
      return true;
    } catch (err) {
      setError(err instanceof ApiError ? err.message : (err as Error).message);
      return false;
    } finally {
      setBusy(false);
    }
  };

  const add = async (event: FormEvent) => {
    event.preventDefault();
    const k = key.trim().toLowerCase().replace(/^0x/, "");
    const v = value.trim().toLowerCase().replace(/^0x/, "");
    if (!HEX.test(k) || k.length / 2 !== map.keySize) {
      setError(`key: give ${map.keySize} bytes as hex (${map.keySize * 2} digits)`);
      return;
    }
    if (!HEX.test(v) || v.length / 2 !== map.valueSize) {
      setError(`value: give ${map.valueSize} bytes as hex (${map.valueSize * 2} digits)`);
      return;
    }
    if (await change([{ key: k, value: v }], [])) {
      setKey("");
      setValue("");
    }
  };

  return (
    <div className="map-entries">
      <h2>
        Entries of <code>{map.id}</code>
      </h2>
      {entries === null && !error && <p>Loading…</p>}
      {entries && entries.length === 0 && <p>No entries set through the controller.</p>}
      {entries && entries.length > 0 && (
        <table data-testid="map-entries">
          <thead>
            <tr>
              <th scope="col">Key (hex)</th>
              <th scope="col">Value (hex)</th>
              {canEdit && <th scope="col">Remove</th>}
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.key}>
                <td>
                  <code>{e.key}</code>
                </td>
                <td>
                  <code>{e.value}</code>
                </td>
                {canEdit && (
                  <td>
                    <button
                      type="button"
                      disabled={busy}
                      aria-label={`Remove entry ${e.key}`}
                      onClick={() => void change([], [e.key])}
                    >
                      Remove
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {canEdit ? (
        <form onSubmit={add} className="entry-form" aria-labelledby="add-entry-title">
          <h3 id="add-entry-title">Set an entry</h3>
          <div className="field">
            <label htmlFor="entry-key">Key ({map.keySize} bytes, hex)</label>
            <input
              id="entry-key"
              value={key}
              onChange={(e) => setKey(e.target.value)}
              spellCheck={false}
              autoComplete="off"
              required
            />
          </div>
          <div className="field">
            <label htmlFor="entry-value">Value ({map.valueSize} bytes, hex)</label>
            <input
              id="entry-value"
              value={value}
              onChange={(e) => setValue(e.target.value)}
              spellCheck={false}
              autoComplete="off"
              required
            />
          </div>
          <div className="field">
            <label htmlFor="release-key">Release key (signs the entries in this page; never uploaded)</label>
            <input
              id="release-key"
              type="file"
              accept=".pem,.key,application/x-pem-file"
              aria-describedby="release-key-help"
              onChange={async (e) => {
                const file = e.target.files?.[0];
                setKeyFile(file ? await file.text() : null);
              }}
            />
            <p id="release-key-help" className="hint">
              Devices that pin release keys install only signed entries.{" "}
              {keyFile ? "Key loaded." : "No key loaded."}
            </p>
          </div>
          <button type="submit" disabled={busy}>
            {busy ? "Saving…" : "Set entry"}
          </button>
        </form>
      ) : (
        <p className="hint">Editing entries needs a session with the deploy scope.</p>
      )}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {status && (
        <p role="status" className="ok-text">
          {status}
        </p>
      )}
    </div>
  );
}
