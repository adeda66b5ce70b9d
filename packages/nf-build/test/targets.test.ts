import { CPU_TARGETS } from "@galette/vocabulary";
import { describe, expect, it } from "vitest";
import { TARGET_INFO, TARGETS } from "../src/toolchain";

describe("nf-build targets", () => {
  it("are the XDP object plus one native library per CPU of the vocabulary's table, with its triple", () => {
    expect(TARGETS).toEqual(["bpf", ...CPU_TARGETS.map((c) => c.target)]);
    for (const cpu of CPU_TARGETS) {
      expect(TARGET_INFO[cpu.target].triple).toBe(cpu.triple);
      expect(TARGET_INFO[cpu.target].artifactTriple).toBe(cpu.triple);
    }
    expect(TARGET_INFO.bpf).toMatchObject({ triple: "bpfel-unknown-none", artifactTriple: "bpf" });
  });
});
