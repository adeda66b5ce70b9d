export * from "./artifacts";
export * from "./kernel";
export * from "./spec";
