export * from "./chains";
export * from "./control";
export * from "./nf-publish";
export * from "./server";
export * from "./storage/artifacts";
export type * from "./storage/repository";
export { openSqliteRepository } from "./storage/sqlite";
