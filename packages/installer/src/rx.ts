/** The rx upcall program (bpf/rx_upcall.bpf.c), compiled once per content into the NF cache. */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CLANG, cacheDir } from "@galette/nf-build";
import { abiHeaderDir } from "@galette/xdp-native";

const execFileP = promisify(execFile);
const source = fileURLToPath(new URL("../bpf/rx_upcall.bpf.c", import.meta.url));

export async function rxUpcallObjectPath(): Promise<string> {
  const include = abiHeaderDir();
  const hash = createHash("sha256")
    .update(readFileSync(source))
    .update(readFileSync(path.join(include, "galette_abi.h")))
    .digest("hex")
    .slice(0, 16);
  const dir = path.join(cacheDir(), "installer");
  const out = path.join(dir, `rx_upcall-${hash}.bpf.o`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const multiarch = (await execFileP("gcc", ["-print-multiarch"])).stdout.trim();
  try {
    await execFileP(CLANG, [
      "-target",
      "bpf",
      "-mcpu=v3",
      "-O2",
      "-g",
      `-I/usr/include/${multiarch}`,
      `-I${include}`,
      "-c",
      source,
      "-o",
      tmp,
    ]);
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`compiling ${source} with ${CLANG} failed: ${e.stderr?.trim() || e.message}`, {
      cause: err,
    });
  }
  renameSync(tmp, out);
  return out;
}
