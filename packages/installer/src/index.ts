export * from "./kernel";
export * from "./spec";
