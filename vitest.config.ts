import { defineConfig } from "vitest/config";

// One project per package/app so `vitest run --project chain` works and each can set its own timeouts.
export default defineConfig({
  test: {
    projects: ["packages/*", "apps/*", "bench"],
  },
});
