/**
 * The assignment the controller sends (a graph of NF-instance UUIDs, map specs and
 * artifact digests) → the installer's input (a @galette/chain ChainPlan keyed by instance
 * name, and per-NF artifacts with files from the agent's cache). Pure: no I/O.
 */
import type { ChainPlan, MapType, PlanEdge, PlanMap, PlanNf } from "@galette/chain";
import type { NfArtifacts } from "@galette/installer";
import type { ArtifactRef, AssignedChain, AssignedNf, MapSpec } from "@galette/protocol";

/** An assignment the agent cannot install; names the NF/edge/map at fault. */
export class AssignmentError extends Error {
  override name = "AssignmentError";
}

/** An artifact an NF needs on this device, and why. */
export interface NeededArtifact {
  nf: AssignedNf;
  kind: "bpf-object" | "native-lib";
  ref: ArtifactRef;
}

/**
 * The artifacts the installer will need: the eBPF object of every XDP NF and the native
 * library of every userland NF. Throws when the controller sent none for one of them
 * (e.g. no build for this CPU).
 */
export function neededArtifacts(chain: AssignedChain, triple: string | undefined): NeededArtifact[] {
  const needed: NeededArtifact[] = [];
  for (const nf of chain.nfs) {
    if (nf.xdp) {
      if (!nf.artifacts.bpfObject)
        throw new AssignmentError(
          `chain "${chain.name}" v${chain.version}: NF "${nf.instance}" (${nf.nf}) runs in XDP but the assignment has no eBPF object for it (was the NF built?)`,
        );
      needed.push({ nf, kind: "bpf-object", ref: nf.artifacts.bpfObject });
    }
    if (nf.userland) {
      if (!nf.artifacts.native)
        throw new AssignmentError(
          `chain "${chain.name}" v${chain.version}: NF "${nf.instance}" (${nf.nf}) runs in userland but the assignment has no native library for ${triple ?? "this CPU"} (publish it built for that triple)`,
        );
      needed.push({ nf, kind: "native-lib", ref: nf.artifacts.native });
    }
  }
  return needed;
}

export interface InstallerInput {
  plan: ChainPlan;
  /** by instance name, as planInstallation wants */
  artifacts: Map<string, NfArtifacts>;
}

// protocol and @galette/chain share the canonical snake_case spellings.
const canonicalMapType = (t: string): MapType => t as MapType;

/**
 * Builds the installer's input. `files(digest)` gives the verified cached file of an
 * artifact. Variants carry the Action names the controller sends (`action<i>` from a
 * controller that does not); the installer uses them in logs and counters' keys.
 */
export function toInstallerInput(chain: AssignedChain, files: (digest: string) => string): InstallerInput {
  const where = `chain "${chain.name}" v${chain.version}`;
  const byUuid = new Map<string, AssignedNf>();
  for (const nf of chain.nfs) {
    if (byUuid.has(nf.uuid)) throw new AssignmentError(`${where}: NF UUID ${nf.uuid} appears twice`);
    byUuid.set(nf.uuid, nf);
  }
  const names = new Set(chain.nfs.map((n) => n.instance));
  if (names.size !== chain.nfs.length) throw new AssignmentError(`${where}: two NFs share an instance name`);
  const mapsById = new Map<string, MapSpec>(chain.maps.map((m) => [m.id, m]));
  const nameOf = (endpoint: string, role: string): string => {
    if (endpoint === "rx" || ["tx", "pass", "drop", "abort"].includes(endpoint)) return endpoint;
    const nf = byUuid.get(endpoint);
    if (!nf)
      throw new AssignmentError(`${where}: an edge's ${role} is ${endpoint}, which is no NF of the chain`);
    return nf.instance;
  };

  const edges: PlanEdge[] = chain.edges.map((e) => ({
    from: nameOf(e.from, "source"),
    to: nameOf(e.to, "target"),
    kind: e.kind,
    action: e.actionIndex ?? 0,
    fromPlacement: e.fromPlacement,
    ...(e.toPlacement ? { toPlacement: e.toPlacement } : {}),
  }));
  const entries = edges.filter((e) => e.from === "rx");
  if (entries.length !== 1)
    throw new AssignmentError(`${where}: expected exactly one edge from rx, found ${entries.length}`);

  const nfs: PlanNf[] = [];
  const artifacts = new Map<string, NfArtifacts>();
  for (const nf of chain.nfs) {
    const next = Array.from({ length: nf.actionCount }, (_, i) => {
      const out = edges.filter((e) => e.from === nf.instance && e.action === i);
      const edge = out.find((e) => e.fromPlacement === "xdp") ?? out[0];
      if (!edge)
        throw new AssignmentError(`${where}: NF "${nf.instance}" has no edge for Action variant ${i}`);
      return edge.kind === "upcall" ? `!${edge.to}` : edge.to;
    });
    const bindings = nf.maps.map(({ field, map }) => {
      const spec = mapsById.get(map);
      if (!spec)
        throw new AssignmentError(
          `${where}: NF "${nf.instance}" binds map field "${field}" to unknown map "${map}"`,
        );
      return { field, spec };
    });
    nfs.push({
      name: nf.instance,
      uuid: nf.uuid,
      xdp: nf.xdp,
      userland: nf.userland,
      path: nf.nf,
      disableXdp: !nf.xdp,
      maps: bindings.map(({ field, spec }) => ({
        name: field,
        map: spec.id,
        type: canonicalMapType(spec.type),
        size: spec.maxEntries,
        shared: spec.shared,
      })),
      next,
      reasons: [],
    });
    artifacts.set(nf.instance, {
      // The UUID changes with the build; the installer reuses an instance only on equal hashes.
      hash: nf.buildHash || nf.uuid,
      variants: next.map((_, i) => nf.actions?.[i] ?? `action${i}`),
      maps: bindings.map(({ field, spec }) => ({
        name: field,
        type: spec.type,
        maxEntries: spec.maxEntries,
        keySize: spec.keySize,
        valueSize: spec.valueSize,
      })),
      ...(nf.xdp && nf.artifacts.bpfObject ? { bpfObject: files(nf.artifacts.bpfObject.digest) } : {}),
      ...(nf.userland && nf.artifacts.native ? { library: files(nf.artifacts.native.digest) } : {}),
    });
  }
  const maps: PlanMap[] = chain.maps.map((m) => ({
    id: m.id,
    name: m.name,
    type: canonicalMapType(m.type),
    size: m.maxEntries,
    shared: m.shared,
    ...(m.owner ? { owner: byUuid.get(m.owner)?.instance ?? m.owner } : {}),
    users: chain.nfs.filter((n) => n.maps.some((b) => b.map === m.id)).map((n) => n.instance),
  }));
  return {
    plan: {
      chain: chain.name,
      file: `${chain.name} v${chain.version} (controller assignment)`,
      entry: entries[0]!.to,
      maxTailCalls: 33,
      nfs,
      edges,
      maps,
      warnings: [],
    },
    artifacts,
  };
}

/** Where a map's entries go: an NF instance binding it and the #[maps] field it binds. */
export function mapBinding(chain: AssignedChain, mapId: string): { instance: string; field: string } {
  for (const nf of chain.nfs)
    for (const b of nf.maps) if (b.map === mapId) return { instance: nf.instance, field: b.field };
  throw new AssignmentError(
    `chain "${chain.name}" v${chain.version}: map entries for "${mapId}", which no NF of the chain binds`,
  );
}
