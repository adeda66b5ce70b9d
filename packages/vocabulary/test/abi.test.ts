import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  ABI_LIMIT_NAMES,
  ACTION_CODES,
  BPF_MAP_TYPE_NAMES,
  CPU_TARGETS,
  canonicalMapType,
  cpuForMachine,
  cpuForNodeArch,
  DEFAULT_DEVICE_LIMITS,
  estimateMapBytes,
  GALETTE_ABI_VERSION,
  GALETTE_MAX_ACTIONS,
  GALETTE_MAX_INSTANCES,
  GALETTE_MAX_MAPS,
  GALETTE_MAX_XSKS,
  MAP_TYPES,
  RESERVED_ACTION_CODES,
} from "../src/index";

const HEADER = new URL("../../xdp-native/include/galette_abi.h", import.meta.url);

/** `#define NAME <integer>` and `NAME = <integer>` (enum members) of the header, comments stripped. */
function headerConstants(): Map<string, number> {
  const text = readFileSync(HEADER, "utf8")
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/.*$/gm, "");
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^\s*#define\s+(GALETTE_\w+)\s+(\d+)\s*$/gm)) out.set(m[1]!, Number(m[2]));
  for (const m of text.matchAll(/\b(GALETTE_ACT_\w+)\s*=\s*(\d+)\s*,?/g)) out.set(m[1]!, Number(m[2]));
  return out;
}

describe("the vocabulary matches galette_abi.h", () => {
  const abi = headerConstants();

  it("finds the header's limits and action kinds", () => {
    expect(abi.get("GALETTE_MAX_INSTANCES")).toBeGreaterThan(0);
    expect([...abi.keys()].filter((k) => k.startsWith("GALETTE_ACT_")).length).toBeGreaterThanOrEqual(6);
  });

  it("has every ABI limit the header defines, with the same value", () => {
    for (const [field, define] of Object.entries(ABI_LIMIT_NAMES)) {
      expect(abi.get(define), define).toBe(DEFAULT_DEVICE_LIMITS[field as keyof typeof ABI_LIMIT_NAMES]);
    }
    const limitDefines = [...abi.keys()].filter((k) => k.startsWith("GALETTE_MAX_"));
    expect(limitDefines.sort()).toEqual(Object.values(ABI_LIMIT_NAMES).sort());
    const named = {
      GALETTE_ABI_VERSION,
      GALETTE_MAX_ACTIONS,
      GALETTE_MAX_INSTANCES,
      GALETTE_MAX_MAPS,
      GALETTE_MAX_XSKS,
    };
    for (const [define, value] of Object.entries(named)) expect(abi.get(define), define).toBe(value);
  });

  it("gives every action kind the header's code, and knows every code the header has", () => {
    const ts = { ...ACTION_CODES, ...RESERVED_ACTION_CODES };
    const header = Object.fromEntries(
      [...abi]
        .filter(([k]) => k.startsWith("GALETTE_ACT_"))
        .map(([k, v]) => [k.slice("GALETTE_ACT_".length).toLowerCase(), v]),
    );
    expect(ts).toEqual(header);
  });
});

describe("map types", () => {
  it("canonicalises spellings and aliases, refuses the rest", () => {
    expect(canonicalMapType("lpm-trie")).toBe("lpm_trie");
    expect(canonicalMapType("LRU_HASH")).toBe("lru_hash");
    expect(canonicalMapType("hash")).toBe("hash_map");
    expect(canonicalMapType("ringbuf")).toBeUndefined();
    expect(Object.keys(BPF_MAP_TYPE_NAMES).sort()).toEqual([...MAP_TYPES].sort());
  });

  it("estimates memory per entry by type", () => {
    expect(estimateMapBytes("array", 1024, 4, 8)).toBe(8 * 1024);
    expect(estimateMapBytes("percpu_array", 10, 4, 8, 4)).toBe(10 * (8 + 32));
    expect(estimateMapBytes("hash_map", 65535, 8, 8)).toBe(65535 * 64);
    expect(estimateMapBytes("lru_hash", 1, 8, 8)).toBeGreaterThan(estimateMapBytes("hash_map", 1, 8, 8));
  });
});

describe("CPU targets", () => {
  it("maps uname -m and process.arch to one entry", () => {
    expect(cpuForMachine("amd64")?.triple).toBe("x86_64-unknown-linux-gnu");
    expect(cpuForMachine("armv7l")?.target).toBe("armv7");
    expect(cpuForMachine("mips")).toBeUndefined();
    expect(cpuForNodeArch("arm64")?.target).toBe("aarch64");
    expect(new Set(CPU_TARGETS.map((c) => c.triple)).size).toBe(CPU_TARGETS.length);
  });
});
