export {
  closestMatch,
  type Diagnostic,
  editDistance,
  formatDiagnostic,
  formatLocation,
  hasErrors,
  type Severity,
  type SourceLocation,
  sortDiagnostics,
} from "./diagnostics";
export { checkNfInterfaces, type NfInterface, withAttributeMaps } from "./interfaces";
export {
  CHAIN_INPUT_LIMITS,
  checkDeviceLimits,
  checkInputCounts,
  checkInputSize,
  DEFAULT_DEVICE_LIMITS,
  type DeviceLimits,
  mapMemory,
} from "./limits";
export { indexToml, type KeyPath, type Position, PositionIndex } from "./locate";
export {
  type Chain,
  type ChainMap,
  canonicalMapName,
  canonicalMapType,
  EXITS,
  type Exit,
  findFunction,
  isRxSource,
  type LinkTarget,
  MAP_TYPES,
  type MapBinding,
  type MapType,
  type NfInstance,
  RX_SOURCES,
  type RxSource,
} from "./model";
export { type ParseOptions, type ParseResult, parseChain } from "./parse";
export {
  type ChainPlan,
  type EdgeKind,
  KERNEL_MAX_TAIL_CALLS,
  type Placement,
  type PlanAction,
  type PlanEdge,
  type PlanEntry,
  type PlanMap,
  type PlanNf,
  type PlanNfMap,
  type PlanOptions,
  planChain,
  targetText,
} from "./plan";
export { loadChainFile } from "./read";
export { GALETTE_NAMESPACE, instanceUuid, uuidV5 } from "./uuid";
