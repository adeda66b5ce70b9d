// the agent gives its start-up garbage back with it (packages/xdp-native: glibc malloc_trim)
export { trimHeap } from "@galette/xdp-native";
export * from "./cost";
export { InstallError } from "./errors";
export * from "./kernel";
export * from "./map-set";
export * from "./probe";
export * from "./record";
export * from "./spec";
export * from "./trace";
export * from "./trace-filter";
