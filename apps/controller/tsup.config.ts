// `galette` (CLI + controller) as one file, dist/galette.mjs, with what it reads at run time
// beside it: see packaging/bundle.ts.
import { realpathSync } from "node:fs";
import { defineConfig } from "tsup";
import { copyAssets, dependencyDir, executableBundle, xdpNativeRuntime } from "../../packaging/bundle";

const sqlite = dependencyDir("apps/controller", "better-sqlite3");

export default defineConfig(
  executableBundle({
    name: "galette",
    entry: "src/cli.ts",
    // A native addon found through `bindings`: shipped as a package in dist/node_modules.
    external: ["better-sqlite3"],
    onSuccess: async () => {
      copyAssets("dist", [
        ...xdpNativeRuntime(),
        "packages/xdp-native/include",
        // nf-build: the `nf` crate NFs compile against, the sysroot script, the files whose
        // hash keys the artifact cache
        "packages/nf",
        "packages/nf-build/scripts/build-sysroot.sh",
        "packages/nf-build/src/build.ts",
        "packages/nf-build/src/glue.ts",
        // nf test: the test-run harness and the variant programs, compiled on first use
        "packages/nf-build/harness",
        // the web console's built files (routes/console.ts serves them)
        "apps/console/dist",
        // tree-sitter's runtime and the Rust grammar (wasm)
        [
          "packages/nf-build/node_modules/web-tree-sitter/tree-sitter.wasm",
          "node_modules/web-tree-sitter/tree-sitter.wasm",
        ],
        [
          "packages/nf-build/node_modules/tree-sitter-rust/package.json",
          "node_modules/tree-sitter-rust/package.json",
        ],
        [
          "packages/nf-build/node_modules/tree-sitter-rust/tree-sitter-rust.wasm",
          "node_modules/tree-sitter-rust/tree-sitter-rust.wasm",
        ],
        // better-sqlite3 and what it requires at run time
        [`${sqlite}/package.json`, "node_modules/better-sqlite3/package.json"],
        [`${sqlite}/lib`, "node_modules/better-sqlite3/lib"],
        [
          `${sqlite}/build/Release/better_sqlite3.node`,
          "node_modules/better-sqlite3/build/Release/better_sqlite3.node",
        ],
        [`${sqlite}/../bindings`, "node_modules/bindings"],
        [`${realpathSync(`${sqlite}/../bindings`)}/../file-uri-to-path`, "node_modules/file-uri-to-path"],
      ]);
    },
  }),
);
