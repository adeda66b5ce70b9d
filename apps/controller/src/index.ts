export * from "./bundle";
export * from "./chains";
export {
  initReleaseKey,
  loadReleaseKey,
  type ReleaseKey,
  readReleasePublicKey,
  signAndPushChain,
  signAndSetMapEntries,
} from "./commands/release";
export * from "./control";
export * from "./crate-archive";
export * from "./nf-builder";
export * from "./nf-publish";
export * from "./operator-client";
export * from "./releases";
export * from "./server";
export * from "./storage/artifacts";
export { openPostgresRepository } from "./storage/postgres";
export type * from "./storage/repository";
export { openSqliteRepository } from "./storage/sqlite";
