import { basename } from "node:path";
import {
  type ChainPlan,
  checkNfInterfaces,
  type Diagnostic,
  formatDiagnostic,
  hasErrors,
  type NfInterface,
  parseChain,
  planChain,
} from "@galette/chain";
import {
  type AssignmentEdge,
  ChainGraph as ChainGraphSchema,
  describeZodError,
  type MapSpec,
} from "@galette/protocol";
import { RequestError } from "./control";
import type { ChainGraph, NfRecord, Repository } from "./storage/repository";

/** The published NF an instance runs: the crate directory's base name (default path nf-examples/<instance>). */
export function nfNameOf(path: string): string {
  return basename(path.replace(/\/+$/, ""));
}

export interface PlannedChain {
  name: string;
  graph: ChainGraph;
  warnings: string[];
}

function fail(summary: string, diagnostics: Diagnostic[]): never {
  const errors = diagnostics.filter((d) => d.severity === "error").map(formatDiagnostic);
  throw new RequestError(400, `${summary}: ${errors[0] ?? "invalid chain"}`, errors);
}

/**
 * TOML → validated chain (syntax, links, maps) → checked against the published NFs'
 * interfaces (arity, map fields and sizes) → placement plan → the graph devices get.
 * Throws RequestError(400) naming file:line and the problem; stores nothing.
 */
export function planChainForPush(repo: Repository, toml: string, file: string, name?: string): PlannedChain {
  const parsed = parseChain(toml, file, name ? { chainName: name } : {});
  if (!parsed.chain || hasErrors(parsed.diagnostics)) fail(`chain ${file} is invalid`, parsed.diagnostics);
  const chain = parsed.chain;

  const published = new Map<string, NfRecord>();
  const interfaces = new Map<string, NfInterface>();
  const missing: string[] = [];
  for (const fn of chain.functions) {
    const nfName = nfNameOf(fn.path);
    const nf = repo.latestNf(nfName);
    if (!nf) {
      missing.push(
        `${file}:${fn.location.line}: [functions.${fn.name}] runs NF "${nfName}", which is not published (galette nf publish ${fn.path})`,
      );
      continue;
    }
    published.set(fn.name, nf);
    interfaces.set(fn.name, nf.interface);
  }
  if (missing.length > 0) throw new RequestError(400, missing[0]!, missing);

  const interfaceProblems = checkNfInterfaces(chain, interfaces);
  if (hasErrors(interfaceProblems)) fail(`chain ${chain.name} does not match its NFs`, interfaceProblems);

  const buildHashes = new Map([...published].map(([instance, nf]) => [instance, nf.buildHash]));
  const plan = planChain(chain, {
    buildHashes,
    warnings: [...parsed.diagnostics, ...interfaceProblems].filter((d) => d.severity === "warning"),
  });
  const graph = graphFromPlan(plan, published);
  // The plan comes from @galette/chain; check it still fits the wire format before storing it.
  const checked = ChainGraphSchema.safeParse(graph);
  if (!checked.success) {
    throw new Error(
      `the chain plan does not fit the protocol's ChainGraph: ${describeZodError(checked.error).join("; ")}`,
    );
  }
  return {
    name: chain.name,
    graph: checked.data,
    warnings: plan.warnings.map(formatDiagnostic),
  };
}

/** The plan (instance names) → the device graph (UUIDs, action indices, sized map specs). */
export function graphFromPlan(plan: ChainPlan, published: ReadonlyMap<string, NfRecord>): ChainGraph {
  const uuidOf = new Map(plan.nfs.map((nf) => [nf.name, nf.uuid]));
  const endpoint = (name: string): string => uuidOf.get(name) ?? name;

  const edges: AssignmentEdge[] = plan.edges.map((edge) => ({
    from: edge.from === "rx" ? "rx" : endpoint(edge.from),
    to: endpoint(edge.to),
    kind: edge.kind,
    actionIndex: edge.from === "rx" ? null : edge.action,
    fromPlacement: edge.fromPlacement,
    ...(edge.toPlacement ? { toPlacement: edge.toPlacement } : {}),
  }));

  const maps: MapSpec[] = plan.maps.map((map) => {
    // Sizes come from the #[maps] field of any NF using the map (checkNfInterfaces made them agree).
    let keySize: number | undefined;
    let valueSize: number | undefined;
    for (const user of map.users) {
      const field = published.get(user)?.interface.maps.find((f) => f.name === map.name);
      keySize ??= field?.keySize;
      valueSize ??= field?.valueSize;
    }
    if (keySize === undefined || valueSize === undefined) {
      throw new RequestError(
        400,
        `map "${map.id}" of chain ${plan.chain}: the NF source does not give a computable ${keySize === undefined ? "key" : "value"} size (use fixed-size #[repr(C)] types)`,
      );
    }
    return {
      id: map.id,
      name: map.name,
      type: map.type,
      keySize,
      valueSize,
      maxEntries: map.size,
      shared: map.shared,
      ...(map.owner ? { owner: uuidOf.get(map.owner)! } : {}),
    };
  });

  const nfs = plan.nfs.map((nf) => {
    const record = published.get(nf.name)!;
    return {
      uuid: nf.uuid,
      instance: nf.name,
      nf: record.name,
      buildHash: record.buildHash,
      xdp: nf.xdp,
      userland: nf.userland,
      actionCount: nf.next.length,
      actions: record.interface.actions.map((a) => a.name),
      maps: nf.maps.map((m) => ({ field: m.name, map: m.map })),
    };
  });
  return { nfs, edges, maps };
}
