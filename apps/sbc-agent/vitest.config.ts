import { defineProject } from "vitest/config";

// The fleet e2e tests build NFs and start a controller plus agents: generous timeouts.
export default defineProject({ test: { name: "agent", testTimeout: 120_000, hookTimeout: 240_000 } });
