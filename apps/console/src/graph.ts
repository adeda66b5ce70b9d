/**
 * A chain version's graph laid out for drawing: the entry (rx; rx.a and rx.b for a chain
 * per direction), one node per NF instance
 * (placed XDP, userland or both), one node per exit the chain uses, and one edge per action
 * table entry (tailcall, upcall or exit), labelled with the Action variant.
 */
import { Graph, layout } from "@dagrejs/dagre";
import type { ChainGraph } from "@galette/protocol";

export type Placement = "xdp" | "userland" | "both";

export interface LaidOutNode {
  id: string;
  label: string;
  kind: "entry" | "nf" | "exit";
  placement?: Placement;
  /** the crate an NF instance runs */
  nf?: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface LaidOutEdge {
  id: string;
  from: string;
  to: string;
  kind: "tailcall" | "upcall" | "exit";
  label: string;
  points: Array<{ x: number; y: number }>;
  labelAt: { x: number; y: number };
}

export interface ChainLayout {
  nodes: LaidOutNode[];
  edges: LaidOutEdge[];
  width: number;
  height: number;
}

const NODE = {
  nf: { width: 170, height: 54 },
  entry: { width: 70, height: 36 },
  exit: { width: 70, height: 36 },
};

export const placementOf = (nf: { xdp: boolean; userland: boolean }): Placement =>
  nf.xdp && nf.userland ? "both" : nf.xdp ? "xdp" : "userland";

export function layoutChain(graph: ChainGraph, direction: "LR" | "TB" = "LR"): ChainLayout {
  const g = new Graph({ multigraph: true });
  g.setGraph({ rankdir: direction, nodesep: 28, ranksep: 70, edgesep: 14, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const nodes = new Map<string, Omit<LaidOutNode, "x" | "y">>();
  const add = (node: Omit<LaidOutNode, "x" | "y">) => {
    nodes.set(node.id, node);
    g.setNode(node.id, { width: node.width, height: node.height });
  };
  // a chain per direction (entry.b) has one entry per port: rx.a and rx.b
  const b = graph.entry.b;
  add({ id: "rx", label: b ? "rx.a" : "rx", kind: "entry", ...NODE.entry });
  if (b) add({ id: "rx.b", label: "rx.b", kind: "entry", ...NODE.entry });
  for (const nf of graph.nfs) {
    add({ id: nf.uuid, label: nf.instance, kind: "nf", placement: placementOf(nf), nf: nf.nf, ...NODE.nf });
  }
  const edges: Array<Omit<LaidOutEdge, "points" | "labelAt">> = [
    { id: "entry", from: "rx", to: graph.entry.target, kind: graph.entry.kind, label: "" },
    ...(b ? [{ id: "entry.b", from: "rx.b", to: b.target, kind: b.kind, label: "" }] : []),
  ];
  for (const nf of graph.nfs) {
    nf.actions.forEach((action, i) => {
      if (action.kind === "tailcall" || action.kind === "upcall") {
        edges.push({
          id: `${nf.uuid}/${i}`,
          from: nf.uuid,
          to: action.target,
          kind: action.kind,
          label: action.variant,
        });
      } else {
        const exit = `exit:${action.kind}`;
        if (!nodes.has(exit)) add({ id: exit, label: action.kind, kind: "exit", ...NODE.exit });
        edges.push({ id: `${nf.uuid}/${i}`, from: nf.uuid, to: exit, kind: "exit", label: action.variant });
      }
    });
  }
  for (const e of edges) {
    g.setEdge(e.from, e.to, { width: e.label.length * 7, height: 14, labelpos: "c" }, e.id);
  }
  layout(g);
  const laidOut: LaidOutNode[] = [...nodes.values()].map((n) => {
    const p = g.node(n.id) as { x: number; y: number };
    return { ...n, x: p.x, y: p.y };
  });
  const laidEdges: LaidOutEdge[] = edges.map((e) => {
    const p = g.edge(e.from, e.to, e.id) as {
      points: Array<{ x: number; y: number }>;
      x?: number;
      y?: number;
    };
    const mid = p.points[Math.floor(p.points.length / 2)] ?? { x: 0, y: 0 };
    return { ...e, points: p.points, labelAt: { x: p.x ?? mid.x, y: p.y ?? mid.y } };
  });
  const size = g.graph() as { width?: number; height?: number };
  return { nodes: laidOut, edges: laidEdges, width: size.width ?? 0, height: size.height ?? 0 };
}
