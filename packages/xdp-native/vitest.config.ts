import { defineProject } from "vitest/config";

// Kernel tests load programs and move real frames over veth pairs; workers spin up threads.
export default defineProject({ test: { name: "xdp-native", testTimeout: 60_000, hookTimeout: 60_000 } });
