import { existsSync, lstatSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { create as createTar } from "tar";

/** Build outputs and VCS data never belong in a published crate. */
const EXCLUDED = new Set(["target", ".git", "node_modules"]);

/**
 * Packs an NF crate directory for `POST /v1/nfs` (what `galette nf publish DIR` sends):
 * a tar with entries under `<dir name>/`, without target/, .git or node_modules.
 * Symbolic links are an error naming the file (the controller would refuse them).
 */
export async function packCrateDir(crateDir: string): Promise<Buffer> {
  const dir = resolve(crateDir);
  if (!existsSync(join(dir, "Cargo.toml")))
    throw new Error(`${dir} has no Cargo.toml: not a crate directory`);
  const name = basename(dir);
  const links: string[] = [];
  const stream = createTar(
    {
      cwd: dirname(dir),
      portable: true,
      gzip: false,
      filter: (path) => {
        const parts = path.split("/");
        if (parts.slice(1).some((part) => EXCLUDED.has(part))) return false;
        if (lstatSync(join(dirname(dir), path)).isSymbolicLink()) {
          links.push(path);
          return false;
        }
        return true;
      },
    },
    [name],
  );
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  if (links.length > 0) {
    throw new Error(
      `${links[0]} is a symbolic link; NF crates may contain only regular files and directories`,
    );
  }
  return Buffer.concat(chunks);
}
