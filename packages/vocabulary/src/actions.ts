/**
 * What an NF's Action variant does: one entry of its action table, `{kind, arg}` in
 * galette_abi.h (`enum galette_action_kind`). The chain planner decides each variant's
 * kind and target once; the wire format and the installer carry it unchanged.
 */

/** Verdicts a link may end in (the names chain files use). */
export const EXITS = ["tx", "reflect", "pass", "drop", "abort"] as const;
export type Exit = (typeof EXITS)[number];

/** Kinds that continue with another NF instance (they carry a target). */
export const TRANSITIONS = ["tailcall", "upcall"] as const;
export type Transition = (typeof TRANSITIONS)[number];

/** Every kind an action-table entry may have. */
export const ACTION_KINDS = [...EXITS, ...TRANSITIONS] as const;
export type ActionKind = Exit | Transition;

/**
 * The ABI code of each kind (`GALETTE_ACT_*`). abort/drop/pass equal the XDP_* codes.
 * `tx` leaves through the other port of a two-port installation (DEVMAP redirect) and
 * reflects on a single port; `reflect` always leaves through the port it came in on.
 * A new kind gets its code here and in the header together.
 */
export const ACTION_CODES: Readonly<Record<ActionKind, number>> = {
  abort: 0,
  drop: 1,
  pass: 2,
  tx: 3,
  reflect: 5,
  tailcall: 100,
  upcall: 101,
};

/** Codes the ABI reserves for kinds no chain can produce yet. */
export const RESERVED_ACTION_CODES: Readonly<Record<string, number>> = {
  redirect: 4,
};

export function isExit(name: string): name is Exit {
  return (EXITS as readonly string[]).includes(name);
}

export function isTransition(kind: string): kind is Transition {
  return (TRANSITIONS as readonly string[]).includes(kind);
}

/**
 * One Action variant's decided behaviour. `target` names the NF instance that runs next
 * (by instance name in a plan, by UUID on the wire) and is present exactly for
 * tailcall/upcall. In userland both transitions mean "run that instance next"; in XDP a
 * tailcall stays in XDP and an upcall hands the frame to an AF_XDP worker.
 */
export type Action<T extends string = string> = { kind: Exit } | { kind: Transition; target: T };
