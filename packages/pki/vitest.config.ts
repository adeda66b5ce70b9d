import { defineProject } from "vitest/config";

export default defineProject({ test: { name: "pki", testTimeout: 30_000 } });
