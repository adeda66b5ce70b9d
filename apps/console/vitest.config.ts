import { defineProject } from "vitest/config";

// The browser tests start a controller, two agents on veth pairs and a headless chromium.
export default defineProject({
  test: { name: "console", include: ["test/**/*.test.ts"], testTimeout: 180_000, hookTimeout: 300_000 },
});
