import { defineProject } from "vitest/config";

export default defineProject({ test: { name: "nf-build", testTimeout: 300_000, hookTimeout: 300_000 } });
