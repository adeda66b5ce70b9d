import { defineProject } from "vitest/config";

// Kernel tests build NFs (cached), load programs and move real frames over veth pairs.
export default defineProject({ test: { name: "installer", testTimeout: 120_000, hookTimeout: 240_000 } });
