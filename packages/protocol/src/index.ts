/**
 * Wire types of the Galette control plane: every message between the controller, the
 * device agents and the operator CLI. Both sides import these schemas; no shape is
 * declared anywhere else. Bump PROTOCOL_VERSION on an incompatible change.
 */

export * from "./agent-config";
export * from "./common";
export * from "./console";
export * from "./device";
export * from "./operator";
export * from "./release";
export * from "./rollout";
export * from "./trace";
