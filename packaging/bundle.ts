/**
 * How `galette` and `galette-agent` become one JavaScript file each (tsup/esbuild), with
 * the files they read at run time beside them.
 *
 * The sources find their non-JS files (the addon, BPF objects, headers, the `nf` crate,
 * tree-sitter's wasm) relative to `import.meta.url`. In a bundle every module shares the
 * bundle's URL, so each module's `import.meta.url` is rewritten to the URL it would have
 * in a tree that mirrors the repository under the bundle's directory
 * (`<dir>/packages/xdp-native/src/native.ts`, `<dir>/node_modules/web-tree-sitter/…`), and
 * the files it looks up are copied to the same relative places. The sources stay as they
 * are, and a lookup that works in the repository works in the bundle.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, realpathSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Options } from "tsup";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** A source file's place in the mirrored tree: repo-relative; node_modules without pnpm's store prefix. */
export function mirrorPath(file: string): string {
  const rel = path.relative(repoRoot, realpathSync(file)).split(path.sep).join("/");
  // node_modules/.pnpm/<name>@<version>/node_modules/<name>/x → node_modules/<name>/x
  const store = /(?:^|\/)node_modules\/\.pnpm\/[^/]+\/node_modules\/(.*)$/.exec(rel);
  if (store) return `node_modules/${store[1]}`;
  return rel;
}

/** esbuild plugin: every module's import.meta.url becomes its URL in the mirrored tree. */
function mirroredImportMetaUrl() {
  return {
    name: "galette-mirrored-import-meta-url",
    setup(build: {
      onLoad(
        o: { filter: RegExp },
        cb: (a: { path: string }) => Promise<{ contents: string; loader: "ts" | "js" } | undefined>,
      ): void;
    }) {
      build.onLoad({ filter: /\.(c|m)?[jt]s$/ }, async (args) => {
        const text = await readFile(args.path, "utf8");
        if (!text.includes("import.meta.url")) return undefined;
        const url = `new URL(${JSON.stringify(mirrorPath(args.path))}, import.meta.url).href`;
        return {
          contents: text.replace(/\bimport\.meta\.url\b/g, url),
          loader: /\.[cm]?ts$/.test(args.path) ? "ts" : "js",
        };
      });
    },
  };
}

/** Copies repo-relative files or directories (a string, or [from, to] for node_modules) into outDir. */
export function copyAssets(outDir: string, assets: Array<string | [string, string]>): void {
  for (const asset of assets) {
    const [from, to] = typeof asset === "string" ? [asset, asset] : asset;
    const src = path.resolve(repoRoot, from);
    if (!existsSync(src)) throw new Error(`bundle asset ${from} is missing (run \`make setup\` first)`);
    const dest = path.join(outDir, to);
    mkdirSync(path.dirname(dest), { recursive: true });
    cpSync(realpathSync(src), dest, {
      recursive: true,
      dereference: true,
      // build trees of Rust crates and editor litter are not part of the sources
      filter: (f) => !/\/(target|\.git)(\/|$)/.test(f),
    });
  }
}

/** The package directory (real path) of a dependency as `fromPackage` resolves it. */
export function dependencyDir(fromPackage: string, name: string): string {
  return realpathSync(path.join(repoRoot, fromPackage, "node_modules", name));
}

/** Files of a directory, recursively (for checking a bundle's contents). */
export function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? listFiles(p).map((f) => `${name}/${f}`) : [name];
  });
}

/**
 * The addon, the BPF objects built with it and, once the sources have it, the NF worker
 * executable (make setup → scripts/setup.d/30-xdp-native.sh).
 */
export function xdpNativeRuntime(): string[] {
  const dir = "packages/xdp-native/build/Release";
  const optional = [`${dir}/galette-nf-worker`].filter((f) => existsSync(path.join(repoRoot, f)));
  return [`${dir}/galette_xdp.node`, `${dir}/root.bpf.o`, `${dir}/rx_upcall.bpf.o`, ...optional];
}

/** Matches every package name except `external` ones (and their subpaths). */
function notExternal(external: string[]): RegExp {
  if (external.length === 0) return /.*/;
  const names = external.map((e) => e.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
  return new RegExp(`^(?!(?:${names})(?:/|$))`);
}

/** tsup options shared by both executables: one ESM file for Node 20, everything inlined except `external`. */
export function executableBundle(o: {
  name: string;
  entry: string;
  external?: string[];
  onSuccess?: () => Promise<void>;
}): Options {
  return {
    entry: { [o.name]: o.entry },
    format: ["esm"],
    platform: "node",
    target: "node20",
    outDir: "dist",
    outExtension: () => ({ js: ".mjs" }),
    clean: true,
    bundle: true,
    splitting: false,
    sourcemap: false,
    dts: false,
    silent: true,
    metafile: true,
    // everything inlined but `external` (tsup's noExternal wins over external: exclude them here)
    noExternal: [notExternal(o.external ?? [])],
    external: o.external ?? [],
    // CommonJS dependencies call require() and read __dirname; an ESM file has neither.
    // (The entry's `#!/usr/bin/env node` line stays first: esbuild keeps it above the banner.)
    banner: {
      js: [
        'import { createRequire as __galetteCreateRequire } from "node:module";',
        'import { fileURLToPath as __galetteFileURLToPath } from "node:url";',
        "const require = __galetteCreateRequire(import.meta.url);",
        "const __filename = __galetteFileURLToPath(import.meta.url);",
        'const __dirname = __filename.slice(0, __filename.lastIndexOf("/"));',
      ].join("\n"),
    },
    esbuildPlugins: [mirroredImportMetaUrl()],
    ...(o.onSuccess ? { onSuccess: o.onSuccess } : {}),
  };
}
