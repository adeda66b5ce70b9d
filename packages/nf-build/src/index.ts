export * from "./analyze";
export * from "./interfaces";
export * from "./types";
