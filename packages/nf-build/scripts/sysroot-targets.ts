/**
 * Prints, one a line, the Rust triples whose no_std builds use nf-build's private sysroot
 * (TARGET_INFO in src/toolchain.ts): the ones `make setup` pre-builds.
 * Usage: node --import tsx packages/nf-build/scripts/sysroot-targets.ts
 */
import { TARGET_INFO, TARGETS } from "../src/toolchain";

for (const target of TARGETS)
  if (TARGET_INFO[target].privateSysroot) process.stdout.write(`${TARGET_INFO[target].triple}\n`);
