/**
 * The dataplane's vocabulary, defined once: action kinds and their ABI codes, map types,
 * device limits and CPU targets. No dependencies: @galette/chain, @galette/protocol and
 * the installer all speak it. The ABI parts are checked against galette_abi.h by a test.
 */
export {
  ACTION_CODES,
  ACTION_KINDS,
  type Action,
  type ActionKind,
  EXITS,
  type Exit,
  isExit,
  isTransition,
  RESERVED_ACTION_CODES,
  TRANSITIONS,
  type Transition,
} from "./actions";
export {
  CPU_TARGETS,
  CPU_TRIPLES,
  type CpuTarget,
  type CpuTargetName,
  type CpuTripleName,
  cpuForMachine,
  cpuForNodeArch,
} from "./cpu";
export {
  ABI_LIMIT_NAMES,
  CHAIN_INPUT_LIMITS,
  type ChainInputLimits,
  DEFAULT_DEVICE_LIMITS,
  type DeviceLimits,
  estimateMapBytes,
  formatBytes,
  GALETTE_ABI_VERSION,
  GALETTE_MAX_ACTIONS,
  GALETTE_MAX_INSTANCES,
  GALETTE_MAX_MAPS,
  GALETTE_MAX_XSKS,
  LIMIT_DESCRIPTIONS,
  maxChainInstances,
} from "./limits";
export {
  BPF_MAP_TYPE_NAMES,
  canonicalMapType,
  MAP_TYPE_ALIASES,
  MAP_TYPES,
  MAX_MAP_ENTRIES_U32,
  type MapType,
} from "./maps";
