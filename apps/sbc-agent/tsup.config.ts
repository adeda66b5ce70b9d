// `galette-agent` as one file, dist/galette-agent.mjs, with the addon and BPF objects beside
// it: see packaging/bundle.ts.
import { defineConfig } from "tsup";
import { copyAssets, executableBundle, xdpNativeRuntime } from "../../packaging/bundle";

export default defineConfig(
  executableBundle({
    name: "galette-agent",
    entry: "src/cli.ts",
    onSuccess: async () => {
      copyAssets("dist", xdpNativeRuntime());
    },
  }),
);
