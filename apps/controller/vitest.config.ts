import { defineProject } from "vitest/config";

// Hooks start real controllers (RSA keys, TLS, SQLite) and CLI processes: on a loaded 2-core
// machine that takes far longer than vitest's 10 s hook default.
export default defineProject({ test: { name: "controller", testTimeout: 120_000, hookTimeout: 180_000 } });
