export * from "./cost";
export * from "./kernel";
export * from "./map-set";
export * from "./probe";
export * from "./spec";
export * from "./trace";
export * from "./trace-filter";
