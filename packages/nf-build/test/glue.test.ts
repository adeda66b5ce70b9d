import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { sanitiseDebugNames } from "../src/build";
import { locateCalls } from "../src/debuglocs";
import { NfBuildError } from "../src/errors";
import { generateBpfGlue, generateNativeGlue, generateShim, resolveMaps } from "../src/glue";
import { ABI_INCLUDE_DIR, parseTargets } from "../src/toolchain";
import type { NfAnalysis } from "../src/types";
import { explainUndefinedSymbols } from "../src/undefined";

const loc = (line: number) => ({ file: "/crates/acl/src/lib.rs", line, column: 5 });

function analysis(over: Partial<NfAnalysis> = {}): NfAnalysis {
  return {
    name: "acl-nf",
    crateDir: "/crates/acl",
    libFile: "/crates/acl/src/lib.rs",
    mapsStructName: "Maps",
    maps: [
      {
        name: "allow_list",
        key: { text: "LpmKeyV4", size: 8 },
        value: { text: "u32", size: 4 },
        location: loc(8),
      },
      {
        name: "flows",
        key: { text: "FlowKey", size: 16 },
        value: { text: "u64", size: 8 },
        mapType: "lru_hash",
        maxEntries: 4096,
        location: loc(9),
      },
    ],
    actionEnum: "Action",
    actions: [
      { name: "Allowed", location: loc(12) },
      { name: "Denied", location: loc(13) },
    ],
    usesStd: false,
    ...over,
  };
}

describe("resolveMaps", () => {
  it("takes types from the source, infers lpm_trie for LpmKey keys and defaults the size", () => {
    expect(resolveMaps(analysis())).toEqual([
      {
        name: "allow_list",
        type: "lpm_trie",
        maxEntries: 1024,
        keyType: "LpmKeyV4",
        valueType: "u32",
        keySize: 8,
        valueSize: 4,
      },
      {
        name: "flows",
        type: "lru_hash",
        maxEntries: 4096,
        keyType: "FlowKey",
        valueType: "u64",
        keySize: 16,
        valueSize: 8,
      },
    ]);
  });

  it("lets the chain override type and size, normalising lpm-trie spellings", () => {
    const maps = resolveMaps(analysis(), {
      allow_list: { type: "lpm-trie", maxEntries: 65535 },
      flows: { type: "hash_map" },
    });
    expect(maps.map((m) => [m.name, m.type, m.maxEntries])).toEqual([
      ["allow_list", "lpm_trie", 65535],
      ["flows", "hash_map", 4096],
    ]);
  });

  it("rejects an override for a field the NF does not have, naming the fields", () => {
    expect(() => resolveMaps(analysis(), { allowlist: { maxEntries: 1 } })).toThrow(
      'map override "allowlist" does not match any #[maps] field of acl-nf (/crates/acl/src/lib.rs); fields: allow_list, flows',
    );
  });

  it("rejects unknown types, bad sizes, unsized types and wrong array/LPM keys with the source location", () => {
    expect(() => resolveMaps(analysis(), { flows: { type: "ringbuf" } })).toThrow(
      /^\/crates\/acl\/src\/lib.rs:9:5: map "flows" has unknown type "ringbuf"/,
    );
    expect(() => resolveMaps(analysis(), { flows: { maxEntries: 0 } })).toThrow(
      /size must be a positive integer, got 0/,
    );
    const unsized = analysis();
    unsized.maps[1] = { ...unsized.maps[1]!, key: { text: "Foreign" } };
    expect(() => resolveMaps(unsized)).toThrow(
      /lib.rs:9:5: cannot compute the size of the key type `Foreign` of map "flows"/,
    );
    expect(() => resolveMaps(analysis(), { flows: { type: "array" } })).toThrow(
      /is an array: its key must be u32, got `FlowKey`/,
    );
    const badLpm = analysis();
    badLpm.maps[0] = { ...badLpm.maps[0]!, key: { text: "u32", size: 4 }, mapType: "lpm_trie" };
    expect(() => resolveMaps(badLpm)).toThrow(/is an lpm_trie: its key must be a u32 prefix length/);
    expect(() => resolveMaps(analysis(), { flows: { type: "ringbuf" } })).toThrow(NfBuildError);
  });
});

describe("glue generation", () => {
  const a = analysis();
  const maps = resolveMaps(a);

  it("defines every ABI map and one BTF map per #[maps] field, typed where primitive", () => {
    const generated = generateShim(a, maps);
    // the ABI maps come from the shared header: check the text clang compiles, header expanded
    const include = '#include "galette_nf_maps.h"';
    expect(generated).toContain(include);
    const shim = generated.replace(
      include,
      readFileSync(path.join(ABI_INCLUDE_DIR, "galette_nf_maps.h"), "utf8"),
    );
    for (const name of [
      "galette_actions",
      "galette_progs",
      "galette_xsks",
      "galette_xsk_count",
      "galette_counts",
    ])
      expect(shim).toContain(`} ${name} SEC(".maps");`);
    expect(shim).toContain("const volatile __u32 galette_instance_id = 0;");
    expect(shim).toContain('SEC("xdp")\nint galette_nf(struct xdp_md *ctx)');
    expect(shim).toMatch(
      /__uint\(type, BPF_MAP_TYPE_LPM_TRIE\);\n\t__uint\(max_entries, 1024\);\n\t__uint\(key_size, 8\);\n\t__type\(value, __u32\);\n\t__uint\(map_flags, BPF_F_NO_PREALLOC\);\n\} nf_map_allow_list SEC/,
    );
    expect(shim).toMatch(
      /BPF_MAP_TYPE_LRU_HASH[^}]*__uint\(key_size, 16\);\n\t__type\(value, __u64\);\n\} nf_map_flows SEC/,
    );
    // maps in declaration order
    expect(shim.indexOf("nf_map_allow_list SEC")).toBeLessThan(shim.indexOf("nf_map_flows SEC"));
  });

  it("times the NF only in a measuring window: entry before the NF, end before the tail call and at the verdict", () => {
    const shim = generateShim(a, maps);
    expect(shim).toContain('#include "galette_cost.h"');
    const entry = shim.slice(shim.indexOf('SEC("xdp")'));
    // the clock is read (galette_cost_start tests the flag) before the NF runs
    expect(entry.indexOf("galette_cost_start()")).toBeLessThan(entry.indexOf("galette_nf_main(ctx)"));
    expect(entry).toMatch(
      /galette_nf_act\(ctx, variant, &start\);\n\tgalette_cost_end\(start\);\n\treturn verdict;/,
    );
    // a successful tail call never returns: its run is added before, and not again after
    expect(shim).toMatch(
      /galette_cost_end\(\*start\);\n\t\t\*start = 0;\n\t\tbpf_tail_call\(ctx, &galette_progs, action->arg\);/,
    );
    const header = readFileSync(path.join(ABI_INCLUDE_DIR, "galette_cost.h"), "utf8");
    expect(header).toContain('volatile __u32 galette_cost_on SEC(".data.cost");');
    expect(header).toContain('} galette_nf_cost SEC(".maps");');
  });

  it("binds maps in declaration order and checks their sizes at compile time", () => {
    const bpf = generateBpfGlue(a, maps);
    expect(bpf).toContain("extern crate acl_nf as galette_user_nf;");
    expect(bpf).toContain("__galette_bind([&raw const nf_map_allow_list, &raw const nf_map_flows])");
    expect(bpf).toContain("galette_user_nf::packet(&mut pkt, &maps) as u32");
    expect(bpf).toContain(
      "__GALETTE_MAP_SIZES[1].0 == 16 && galette_user_nf::Maps::__GALETTE_MAP_SIZES[1].1 == 8",
    );
    const native = generateNativeGlue(a, maps);
    expect(native).toContain('pub extern "C" fn galette_nf_abi_version() -> u32 {\n    1\n}');
    expect(native).toContain(
      "__galette_bind([nf::__private::MapHandle::fd_only(*map_fds.add(0)), nf::__private::MapHandle::fd_only(*map_fds.add(1))])",
    );
    // the entry point workers prefer: mapped arrays, one struct galette_nf_map per field
    expect(native).toContain('pub unsafe extern "C" fn galette_nf_packet_mapped(');
    expect(native).toContain("__galette_bind([*maps.add(0), *maps.add(1)])");
    expect(native).toContain("#![no_std]");
    expect(native).toContain("fn abort() -> !;");
  });

  it("calls packet(pkt) for NFs without #[maps] and leaves std NFs their own panic handler", () => {
    const noMaps = analysis({ maps: [], mapsStructName: undefined, usesStd: true });
    const bpf = generateBpfGlue(noMaps, []);
    expect(bpf).toContain("galette_user_nf::packet(&mut pkt) as u32");
    expect(bpf).not.toContain("__galette_bind");
    const native = generateNativeGlue(noMaps, []);
    expect(native).not.toContain("#![no_std]");
    expect(native).not.toContain("panic_handler");
  });
});

describe("helpers", () => {
  it("parses target lists and names the valid ones on error", () => {
    expect(parseTargets("bpf, x86_64,bpf")).toEqual(["bpf", "x86_64"]);
    expect(() => parseTargets("bpf,mips")).toThrow(
      'unknown target "mips": expected one of bpf, x86_64, aarch64, armv7, riscv64',
    );
    expect(() => parseTargets(" , ")).toThrow(/no targets given/);
  });

  it("turns Rust debug names into C identifiers and leaves the rest of the IR alone", () => {
    const ir = [
      '!48 = distinct !DISubprogram(name: "step<compute::packet::{closure_env#0}>", linkageName: "_RNv4step", scope: !3)',
      '!50 = !DICompositeType(tag: DW_TAG_structure_type, name: "Map<u32, u64>", file: !3)',
      '!51 = !DIBasicType(name: "()", encoding: DW_ATE_unsigned)',
      '!52 = !DIFile(filename: "src/lib.rs", directory: "/x")',
      '@s = constant [3 x i8] c"a<b"',
    ].join("\n");
    expect(sanitiseDebugNames(ir).split("\n")).toEqual([
      '!48 = distinct !DISubprogram(name: "step_compute__packet___closure_env_0__", linkageName: "_RNv4step", scope: !3)',
      '!50 = !DICompositeType(tag: DW_TAG_structure_type, name: "Map_u32__u64_", file: !3)',
      '!51 = !DIBasicType(name: "__", encoding: DW_ATE_unsigned)',
      '!52 = !DIFile(filename: "src/lib.rs", directory: "/x")',
      '@s = constant [3 x i8] c"a<b"',
    ]);
  });

  it("finds the author's line behind a panic call through inlined frames", () => {
    const ir = [
      "  call void @_ZN4core9panicking18panic_bounds_check(i64 %i, i64 14, ptr @alloc) #3, !dbg !20",
      '!5 = !DIFile(filename: "src/lib.rs", directory: "/crates/acl")',
      '!6 = !DIFile(filename: "/usr/src/rustc-1.96.0/library/core/src/slice/index.rs", directory: "")',
      '!10 = distinct !DISubprogram(name: "packet", scope: !5, file: !5, line: 10)',
      "!11 = distinct !DILexicalBlock(scope: !10, file: !5, line: 11, column: 5)",
      '!12 = distinct !DISubprogram(name: "index_mut", scope: !6, file: !6, line: 200)',
      "!20 = !DILocation(line: 201, column: 9, scope: !12, inlinedAt: !21)",
      "!21 = distinct !DILocation(line: 13, column: 9, scope: !11)",
    ].join("\n");
    const symbols = new Map([
      ["_ZN4core9panicking18panic_bounds_check", "core::panicking::panic_bounds_check"],
    ]);
    expect(locateCalls(ir, symbols, "/crates/acl")).toEqual([
      { symbol: "core::panicking::panic_bounds_check", file: "/crates/acl/src/lib.rs", line: 13, column: 9 },
    ]);
  });

  it("explains each kind of forbidden symbol with a fix", () => {
    const text = explainUndefinedSymbols(
      analysis(),
      ["core::panicking::panic_bounds_check", "core::option::unwrap_failed", "memcpy", "weird_fn"],
      [{ symbol: "core::panicking::panic_bounds_check", file: "src/lib.rs", line: 13, column: 9 }],
    );
    expect(text).toContain("NF acl-nf (/crates/acl/src/lib.rs) cannot run in XDP");
    expect(text).toContain("src/lib.rs:13:9: calls core::panicking::panic_bounds_check");
    expect(text).toContain("pkt.slice(n) / pkt.slice_from(off, n)");
    expect(text).toContain("use match, if let, let-else or unwrap_or(...) instead");
    expect(text).toContain("copy or compare fixed, small sizes");
    expect(text).toContain("weird_fn: a library function that is not available in BPF");
  });
});
