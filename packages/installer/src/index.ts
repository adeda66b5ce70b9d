export * from "./kernel";
export * from "./map-set";
export * from "./probe";
export * from "./spec";
