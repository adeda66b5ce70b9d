export * from "./kernel";
export * from "./map-set";
export * from "./spec";
export * from "./probe";
