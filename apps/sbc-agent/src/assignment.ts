/**
 * The assignment the controller sends (a graph of NF-instance UUIDs, each with its decided
 * action table, map specs and artifact digests) → the installer's input (the same plan
 * keyed by instance name, and per-NF artifacts with files from the agent's cache). Only
 * names change: every action's kind and target are carried as the controller decided
 * them. Pure: no I/O.
 */
import type { InstallPlan, NfArtifacts } from "@galette/installer";
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
  plan: InstallPlan;
  /** by instance name, as planInstallation wants */
  artifacts: Map<string, NfArtifacts>;
}

/** Builds the installer's input. `files(digest)` gives the verified cached file of an artifact. */
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
  const instanceOf = (uuid: string, role: string): string => {
    const nf = byUuid.get(uuid);
    if (!nf) throw new AssignmentError(`${where}: ${role} is ${uuid}, which is no NF of the chain`);
    return nf.instance;
  };

  const entry: InstallPlan["entry"] = {
    kind: chain.entry.kind,
    target: instanceOf(chain.entry.target, "the entry"),
  };
  // a chain per direction: rx.b's entry, carried as decided
  if (chain.entry.b)
    entry.b = { kind: chain.entry.b.kind, target: instanceOf(chain.entry.b.target, "the rx.b entry") };
  const nfs: InstallPlan["nfs"] = [];
  const artifacts = new Map<string, NfArtifacts>();
  for (const nf of chain.nfs) {
    const actions = nf.actions.map((a, i) =>
      "target" in a
        ? {
            kind: a.kind,
            target: instanceOf(a.target, `NF "${nf.instance}" Action variant ${i} (${a.variant})'s target`),
          }
        : { kind: a.kind },
    );
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
      maps: bindings.map(({ field, spec }) => ({
        name: field,
        map: spec.id,
        type: spec.type,
        maxEntries: spec.maxEntries,
        shared: spec.shared,
      })),
      actions,
    });
    artifacts.set(nf.instance, {
      // The UUID changes with the build; the installer reuses an instance only on equal hashes.
      hash: nf.buildHash || nf.uuid,
      variants: nf.actions.map((a) => a.variant),
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
  return { plan: { chain: chain.name, entry, nfs }, artifacts };
}

/** Where a map's entries go: an NF instance binding it and the #[maps] field it binds. */
export function mapBinding(chain: AssignedChain, mapId: string): { instance: string; field: string } {
  for (const nf of chain.nfs)
    for (const b of nf.maps) if (b.map === mapId) return { instance: nf.instance, field: b.field };
  throw new AssignmentError(
    `chain "${chain.name}" v${chain.version}: map entries for "${mapId}", which no NF of the chain binds`,
  );
}
