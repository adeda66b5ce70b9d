export * from "./analyze";
export * from "./build";
export * from "./errors";
export * from "./glue";
export * from "./interfaces";
export * from "./toolchain";
export * from "./types";
export * from "./chain-build";
