/**
 * std NFs on other CPUs: std comes from Debian's multiarch libstd-rust-web-dev:<arch>
 * (aarch64, armv7), riscv64 has none. examples.test.ts runs dpi's aarch64 (and, where its std
 * is installed, armv7) library under qemu-user against the x86_64 one; this file covers the
 * refusals an author sees.
 */
import { describe, expect, it } from "vitest";
import { buildNf, NfBuildError, STD_SOURCE, stdStatus } from "../src";
import { exampleDir } from "./support";

const dpi = exampleDir("dpi");

async function buildError(targets: ("armv7" | "riscv64")[]): Promise<string> {
  const err = await buildNf(dpi, { targets }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(NfBuildError);
  return (err as Error).message;
}

describe("nf-build: std NFs on ARM and riscv64", () => {
  it("aarch64 has std from libstd-rust-web-dev:arm64 (make setup installs it)", () => {
    expect(STD_SOURCE.aarch64).toEqual({ kind: "multiarch", debArch: "arm64" });
    expect(stdStatus("aarch64")).toEqual({ ok: true });
  });

  it("a std NF for riscv64 is refused: Debian 12 has no riscv64 port", async () => {
    expect(stdStatus("riscv64")).toMatchObject({ ok: false, permanent: true });
    const msg = await buildError(["riscv64"]);
    expect(msg).toContain("NF dpi uses std, which cannot be built for riscv64 here");
    expect(msg).toContain("Debian 12 has no riscv64 port");
    expect(msg).toContain("#![no_std]");
  });

  it("with skipUnavailable (nf build --all-targets, the controller) riscv64 is skipped with the reason", async () => {
    const r = await buildNf(dpi, { targets: ["x86_64", "riscv64"], skipUnavailable: true });
    expect(r.artifacts.map((a) => a.target)).toEqual(["x86_64"]);
    expect(r.skipped).toEqual([
      { target: "riscv64", reason: expect.stringContaining("Debian 12 has no riscv64 port") },
    ]);
  });

  // Which branch runs depends on whether make setup could install the armhf std here (the
  // mirror's armhf index can be mid-sync): both are what an author must see.
  it("armv7: builds with libstd-rust-web-dev:armhf, or fails naming the package and make setup", async () => {
    const status = stdStatus("armv7");
    if (status.ok) {
      const r = await buildNf(dpi, { targets: ["armv7"] });
      expect(r.artifacts.map((a) => a.triple)).toEqual(["armv7-unknown-linux-gnueabihf"]);
      return;
    }
    expect(status.permanent).toBe(false);
    const msg = await buildError(["armv7"]);
    expect(msg).toContain("NF dpi uses std, which cannot be built for armv7 here");
    expect(msg).toContain("libstd-rust-web-dev:armhf");
    expect(msg).toContain("make setup");
    expect(msg).toContain("dpkg --add-architecture armhf");
  });
});
