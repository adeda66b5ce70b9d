import { defineProject } from "vitest/config";

// The smoke benchmark runs real traffic for a few minutes (every scenario, footprint and
// per-packet cost rows); keep it out of the default short timeouts. The limits guard
// against a hang, they are not a speed target.
export default defineProject({ test: { name: "bench", testTimeout: 600_000, hookTimeout: 60_000 } });
