import { defineProject } from "vitest/config";

// The smoke benchmark runs real traffic for a few minutes (every scenario, footprint,
// per-packet cost and controller scale rows); keep it out of the default short timeouts. The limits guard
// against a hang, they are not a speed target.
export default defineProject({ test: { name: "bench", testTimeout: 780_000, hookTimeout: 60_000 } });
