import { defineProject } from "vitest/config";

// The smoke benchmark runs real traffic for ~1 minute; keep it out of the default short timeouts.
export default defineProject({ test: { name: "bench", testTimeout: 180_000, hookTimeout: 60_000 } });
