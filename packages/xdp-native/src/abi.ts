/** Mirror of include/galette_abi.h (the C header is the source of truth; keep in step). */
export const GALETTE_ABI_VERSION = 1;
export const GALETTE_MAX_ACTIONS = 16;
export const GALETTE_MAX_INSTANCES = 256;
export const GALETTE_MAX_XSKS = 64;
export const GALETTE_MAX_MAPS = 16;

export const ActionKind = {
  abort: 0,
  drop: 1,
  pass: 2,
  tx: 3,
  redirect: 4,
  tailcall: 100,
  upcall: 101,
} as const;
export type ActionKindName = keyof typeof ActionKind;

/** Names every generated NF object carries (see the header's comment). */
export const AbiNames = {
  nfProgram: "galette_nf",
  actions: "galette_actions",
  progs: "galette_progs",
  xsks: "galette_xsks",
  xskCount: "galette_xsk_count",
  ports: "galette_ports",
  counts: "galette_counts",
  instanceId: "galette_instance_id",
  rootProgram: "galette_root",
  rootProgs: "galette_root_progs",
} as const;
