import type { Action, MapType, Transition } from "@galette/vocabulary";
import type { Diagnostic, SourceLocation } from "./diagnostics";
import type { Chain, LinkTarget, NfInstance } from "./model";
import { instanceUuid } from "./uuid";

/**
 * Successful tail calls the kernel allows per packet: MAX_TAIL_CALL_CNT, 33 since Linux
 * 5.17 (which only renamed the limit all JITs already enforced: 33 calls, 34 programs).
 */
export const KERNEL_MAX_TAIL_CALLS = 33;

export type Placement = "xdp" | "userland";

/**
 * - entry:    rx → the first NF (the root XDP program tail-calls it, or upcalls when the
 *             entry runs in userland; see toPlacement)
 * - tailcall: XDP NF → XDP NF (bpf_tail_call through the PROG_ARRAY)
 * - upcall:   XDP NF → userland NF (AF_XDP redirect with metadata)
 * - call:     userland NF → userland NF (a function call in the worker)
 * - exit:     NF → tx / pass / drop / abort
 */
export type EdgeKind = "entry" | "tailcall" | "upcall" | "call" | "exit";

export interface PlanEdge {
  /** NF instance name, or "rx" (rx.a / rx.b for a chain with directions) */
  from: string;
  /** NF instance name, or an exit (tx, pass, drop, abort) */
  to: string;
  kind: EdgeKind;
  /** index of the Action variant (position in `to`); 0 for the rx edge */
  action: number;
  /** which copy of `from` takes this edge (an NF placed in both has both) */
  fromPlacement: Placement;
  /** where `to` runs; absent for exits */
  toPlacement?: Placement;
}

export interface PlanNfMap {
  /** the #[maps] field name */
  name: string;
  /** PlanMap.id */
  map: string;
  type: MapType;
  maxEntries: number;
  shared: boolean;
}

/**
 * What an Action variant does, decided here once: the entry of the instance's action
 * table. `target` is an NF instance name. An NF placed in XDP has one table for both
 * placements (its XDP edges decide it); in userland a tailcall and an upcall both mean
 * "run that instance next".
 */
export type PlanAction = Action<string>;

export interface PlanNf {
  name: string;
  uuid: string;
  xdp: boolean;
  userland: boolean;
  path: string;
  disableXdp: boolean;
  /** tail calls that lead to this NF's XDP program on its longest XDP path (entry = 1) */
  xdpDepth?: number;
  maps: PlanNfMap[];
  /** one per Action variant, in order: the target as written (`!dpi`, `tx`), for people */
  next: string[];
  /** one per Action variant, in order: the decided action-table entry */
  actions: PlanAction[];
  /** why it runs where it runs */
  reasons: string[];
}

export interface PlanMap {
  id: string;
  name: string;
  type: MapType;
  maxEntries: number;
  shared: boolean;
  owner?: string;
  users: string[];
}

/** How frames reach an entry NF: tailcall (it runs in XDP) or upcall (userland). */
export interface PlanEntry {
  kind: Transition;
  target: string;
}

export interface ChainPlan {
  chain: string;
  file: string;
  /**
   * How rx reaches the entry NF (frames from every port). With `b`, the chain has a
   * direction per port: this entry serves frames arriving on the first port (`rx.a`) and
   * `b` those arriving on the second (`rx.b`); it installs on two ports only.
   */
  entry: PlanEntry & { b?: PlanEntry };
  maxTailCalls: number;
  nfs: PlanNf[];
  edges: PlanEdge[];
  maps: PlanMap[];
  warnings: Diagnostic[];
}

export interface PlanOptions {
  /** tail-call budget per packet; default KERNEL_MAX_TAIL_CALLS */
  maxTailCalls?: number;
  /** NF build hash per instance name, mixed into the UUID (from the NF compiler) */
  buildHashes?: ReadonlyMap<string, string>;
  /** validation warnings to carry into the plan */
  warnings?: readonly Diagnostic[];
}

/**
 * Decides where each NF instance runs and classifies every edge.
 *
 * Rules (docs/chain-format.md "Placement"):
 * - The root program reaches the entry NF with one tail call, so the entry has depth 1
 *   and an NF at depth d has used d tail calls. An XDP edge u → v is a tail call while
 *   depth(u) + 1 ≤ maxTailCalls; past that it becomes an upcall and v runs in userland.
 * - depth(v) is the longest XDP path to v: one XDP program (one action table) serves every
 *   path, so the deepest path decides.
 * - `!nf` and `disable_xdp` make the edge an upcall; from a userland NF every edge is a call
 *   (there is no way back into XDP). An NF reached both ways runs in both.
 */
export function planChain(chain: Chain, options: PlanOptions = {}): ChainPlan {
  const maxTailCalls = options.maxTailCalls ?? KERNEL_MAX_TAIL_CALLS;
  if (!Number.isInteger(maxTailCalls) || maxTailCalls < 1) {
    throw new Error(`planChain: maxTailCalls must be a positive integer, got ${maxTailCalls}`);
  }
  const byName = new Map(chain.functions.map((f) => [f.name, f]));
  const xdp = new Set<string>();
  const userland = new Set<string>();
  const depth = new Map<string, number>();
  /** predecessor on the deepest XDP path, for warnings */
  const deepestFrom = new Map<string, string>();
  const reasons = new Map<string, string[]>();
  const edges: PlanEdge[] = [];
  const warnings: Diagnostic[] = [...(options.warnings ?? [])];
  const reason = (nf: string, text: string) => {
    const list = reasons.get(nf) ?? [];
    if (!list.includes(text)) list.push(text);
    reasons.set(nf, list);
  };

  // Entries: rx (both ports), or rx.a and rx.b. Each is one tail call (depth 1) from the
  // root program, or an upcall when written `!nf` or the NF is disable_xdp.
  const sources: Array<{ from: string; target: Extract<LinkTarget, { kind: "nf" }> }> = chain.entryB
    ? [
        { from: "rx.a", target: chain.entry },
        { from: "rx.b", target: chain.entryB },
      ]
    : [{ from: "rx", target: chain.entry }];
  const entryKinds: Transition[] = [];
  for (const { from, target } of sources) {
    const entryNf = byName.get(target.nf)!;
    const upcalled = target.upcall || entryNf.disableXdp;
    entryKinds.push(upcalled ? "upcall" : "tailcall");
    if (upcalled) {
      userland.add(target.nf);
      reason(target.nf, target.upcall ? `entry, upcalled by ${from} (!)` : "entry, disable_xdp");
    } else {
      xdp.add(target.nf);
      depth.set(target.nf, 1);
      reason(target.nf, `entry of ${from} (1 tail call from the root program)`);
    }
    edges.push({
      from,
      to: target.nf,
      kind: "entry",
      action: 0,
      fromPlacement: "xdp",
      toPlacement: upcalled ? "userland" : "xdp",
    });
  }

  const pathTo = (nf: string): string[] => {
    const out = [nf];
    for (let cur = deepestFrom.get(nf); cur !== undefined; cur = deepestFrom.get(cur)) out.push(cur);
    return ["rx", ...out.reverse()];
  };

  for (const name of topologicalOrder(chain, byName)) {
    const nf = byName.get(name)!;
    const placements: Placement[] = [];
    if (xdp.has(name)) placements.push("xdp");
    if (userland.has(name)) placements.push("userland");
    for (const placement of placements) {
      nf.targets.forEach((target, action) => {
        if (target.kind === "exit") {
          edges.push({ from: name, to: target.exit, kind: "exit", action, fromPlacement: placement });
          return;
        }
        const to = target.nf;
        const push = (kind: EdgeKind, toPlacement: Placement) =>
          edges.push({ from: name, to, kind, action, fromPlacement: placement, toPlacement });
        if (placement === "userland") {
          userland.add(to);
          reason(to, `called from userland "${name}"`);
          push("call", "userland");
        } else if (target.upcall) {
          userland.add(to);
          reason(to, `upcall from "${name}" (!${to})`);
          push("upcall", "userland");
        } else if (byName.get(to)!.disableXdp) {
          userland.add(to);
          reason(to, "disable_xdp");
          push("upcall", "userland");
        } else {
          const d = depth.get(name)! + 1;
          if (d > maxTailCalls) {
            userland.add(to);
            reason(to, `tail-call limit: would be tail call ${d} of at most ${maxTailCalls}`);
            warnings.push(depthWarning(target.location, name, to, d, maxTailCalls, pathTo(name)));
            push("upcall", "userland");
          } else {
            xdp.add(to);
            if (d > (depth.get(to) ?? 0)) {
              depth.set(to, d);
              deepestFrom.set(to, name);
            }
            reason(to, `tail call from "${name}"`);
            push("tailcall", "xdp");
          }
        }
      });
    }
  }

  const mapsById = new Map(chain.maps.map((m) => [m.id, m]));
  const edgesFrom = new Map<string, PlanEdge[]>();
  for (const e of edges) edgesFrom.set(e.from, [...(edgesFrom.get(e.from) ?? []), e]);
  const nfs: PlanNf[] = chain.functions.map((f) => {
    const planNf: PlanNf = {
      name: f.name,
      uuid: instanceUuid(chain.name, f.name, options.buildHashes?.get(f.name)),
      xdp: xdp.has(f.name),
      userland: userland.has(f.name),
      path: f.path,
      disableXdp: f.disableXdp,
      maps: f.maps.map((b) => {
        const m = mapsById.get(b.map)!;
        return { name: b.name, map: m.id, type: m.type, maxEntries: m.maxEntries, shared: m.shared };
      }),
      next: f.targets.map(targetText),
      actions: decideActions(f, xdp.has(f.name), edgesFrom.get(f.name) ?? []),
      reasons: reasons.get(f.name) ?? ["unreachable: not placed"],
    };
    const d = depth.get(f.name);
    if (d !== undefined) planNf.xdpDepth = d;
    return planNf;
  });
  const maps: PlanMap[] = chain.maps.map((m) => {
    const out: PlanMap = {
      id: m.id,
      name: m.name,
      type: m.type,
      maxEntries: m.maxEntries,
      shared: m.shared,
      users: [...m.users],
    };
    if (m.owner) out.owner = m.owner;
    return out;
  });
  const entry: ChainPlan["entry"] = { kind: entryKinds[0]!, target: chain.entry.nf };
  if (chain.entryB) entry.b = { kind: entryKinds[1]!, target: chain.entryB.nf };
  return {
    chain: chain.name,
    file: chain.file,
    entry,
    maxTailCalls,
    nfs,
    edges,
    maps,
    warnings,
  };
}

/**
 * The action table of one NF from its classified edges: the XDP copy's edges when it runs
 * in XDP (one table serves both copies), else its userland edges. Unplaced NFs get their
 * targets as written (nothing installs them).
 */
function decideActions(nf: NfInstance, inXdp: boolean, out: PlanEdge[]): PlanAction[] {
  const placement: Placement = inXdp ? "xdp" : "userland";
  return nf.targets.map((target, action): PlanAction => {
    if (target.kind === "exit") return { kind: target.exit };
    const edge = out.find((e) => e.action === action && e.fromPlacement === placement);
    // upcall: the target runs in userland from XDP; tailcall: it stays in XDP, or (from
    // userland, a "call") the worker runs it next, which is what a tailcall entry means there
    if (edge?.kind === "upcall") return { kind: "upcall", target: target.nf };
    if (edge) return { kind: "tailcall", target: target.nf };
    return target.upcall ? { kind: "upcall", target: target.nf } : { kind: "tailcall", target: target.nf };
  });
}

function depthWarning(
  location: SourceLocation,
  from: string,
  to: string,
  depth: number,
  max: number,
  path: string[],
): Diagnostic {
  const shown = path.length > 6 ? [...path.slice(0, 3), "…", ...path.slice(-2)] : path;
  return {
    severity: "warning",
    ...location,
    code: "tail-call-limit",
    message:
      `"${to}" runs in userland: reaching it from "${from}" would be tail call ${depth}, ` +
      `but the kernel allows ${max} tail calls per packet (MAX_TAIL_CALL_CNT; the root program's call ` +
      `to the entry NF counts as one). Path: ${[...shown, to].join(" → ")}. ` +
      `"${from}" upcalls to AF_XDP and "${to}" and everything after it run in userland.`,
    hint: "shorten the XDP part of the chain, or accept the userland tail (slower)",
  };
}

export function targetText(t: LinkTarget): string {
  return t.kind === "exit" ? t.exit : `${t.upcall ? "!" : ""}${t.nf}`;
}

/**
 * NFs reachable from the entries, every NF after all its predecessors (the chain is
 * acyclic). Iterative depth-first post-order: chains from files can be long.
 */
function topologicalOrder(chain: Chain, byName: Map<string, NfInstance>): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const stack: Array<{ name: string; next: number }> = [];
  // One post-order over both entries: reversed, it is still a topological order.
  for (const root of chain.entryB ? [chain.entry.nf, chain.entryB.nf] : [chain.entry.nf]) {
    if (seen.has(root)) continue;
    seen.add(root);
    stack.push({ name: root, next: 0 });
    postOrder(stack, seen, order, byName);
  }
  return order.reverse();
}

function postOrder(
  stack: Array<{ name: string; next: number }>,
  seen: Set<string>,
  order: string[],
  byName: Map<string, NfInstance>,
): void {
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const actions = byName.get(top.name)?.targets ?? [];
    let pushed = false;
    while (top.next < actions.length) {
      const t = actions[top.next++]!;
      if (t.kind === "nf" && !seen.has(t.nf)) {
        seen.add(t.nf);
        stack.push({ name: t.nf, next: 0 });
        pushed = true;
        break;
      }
    }
    if (!pushed) {
      order.push(top.name);
      stack.pop();
    }
  }
}
