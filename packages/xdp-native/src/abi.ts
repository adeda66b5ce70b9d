/*
 * The ABI of include/galette_abi.h as the TypeScript side sees it. Its numbers (version,
 * limits, action codes) are the vocabulary's, which a test checks against the header;
 * the object names below are this package's own.
 */
import { ACTION_CODES } from "@galette/vocabulary";

export {
  GALETTE_ABI_VERSION,
  GALETTE_MAX_ACTIONS,
  GALETTE_MAX_INSTANCES,
  GALETTE_MAX_MAPS,
  GALETTE_MAX_XSKS,
} from "@galette/vocabulary";

/** Action-table entry kinds by name (`enum galette_action_kind`). */
export const ActionKind = ACTION_CODES;
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
  rootPorts: "galette_root_ports",
} as const;
