import path from "node:path";
import { buildNfs } from "@galette/nf-build";
import { describe, expect, it } from "vitest";
import { buildVerdicts, KNOWN_KERNELS, kernelVerdicts } from "../src/kernel-fit";

const examples = path.resolve(import.meta.dirname, "../../../nf-examples");
const byRelease = (v: { release: string; loads: boolean; reasons: string[] }[]) =>
  Object.fromEntries(v.map((k) => [k.release, k.loads ? "yes" : k.reasons.join("; ")]));

describe("galette nf build: expected to load, per known kernel", () => {
  it("knows the tested kernels (6.1 on the emulated arm64 device, 6.18 here)", () => {
    expect(KNOWN_KERNELS.filter((k) => k.tested).map((k) => k.release)).toEqual(["6.1", "6.18"]);
  });

  it("refuses a userland NF without AF_XDP and nf::repeat without bpf_loop, from real builds", async () => {
    const results = await buildNfs(
      [path.join(examples, "compute"), path.join(examples, "dpi"), path.join(examples, "macswap")],
      {
        targets: ["bpf"],
      },
    );
    const all = await buildVerdicts(results);
    const verdicts = Object.fromEntries(results.map((r, i) => [r.name, byRelease(all[i]!)]));
    // compute's XDP object calls bpf_loop (nf::repeat): 5.17 and later
    expect(verdicts.compute).toMatchObject({
      "4.14": expect.stringMatching(/bpf_loop/),
      "5.10": expect.stringMatching(/bpf_loop/),
      "6.1": "yes",
      "6.18": "yes",
    });
    // dpi (std) runs only in the AF_XDP workers: 4.18 and later
    expect(verdicts.dpi).toMatchObject({
      "4.14": expect.stringMatching(/AF_XDP/),
      "5.10": "yes",
      "6.1": "yes",
    });
    expect(Object.values(verdicts.macswap!)).toEqual(KNOWN_KERNELS.map(() => "yes"));
  }, 300_000);

  it("names a map type the kernel lacks", () => {
    const old = { ...KNOWN_KERNELS[0]!, release: "4.9", mapTypes: ["hash_map", "array"] as const };
    const [v] = kernelVerdicts({ userlandOnly: false, callsBpfLoop: false, mapTypes: ["lpm-trie", "hash"] }, [
      old,
    ]);
    expect(v).toMatchObject({ release: "4.9", loads: false, reasons: ["no lpm_trie maps"] });
  });
});
