export * from "./agent";
export * from "./assignment";
export * from "./cache";
export * from "./client";
export * from "./config";
