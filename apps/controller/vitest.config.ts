import { defineProject } from "vitest/config";

export default defineProject({ test: { name: "controller", testTimeout: 60_000 } });
