import { defineProject } from "vitest/config";

export default defineProject({ test: { name: "chain", testTimeout: 30_000 } });
