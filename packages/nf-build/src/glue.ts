/**
 * Glue generation: from an NF's analysis, the code that binds it to the dataplane ABI
 * (packages/xdp-native/include/galette_abi.h). Everything here is generated into a build
 * directory, never into the author's crate.
 * - BPF: a Rust glue crate exporting `galette_nf_main(ctx)` and a C shim holding the BTF map
 *   definitions and the `galette_nf` XDP entry that acts on the returned variant.
 * - native: a Rust cdylib glue exporting `galette_nf_abi_version` and `galette_nf_packet`.
 */
import { BPF_MAP_TYPE_NAMES, canonicalMapType, GALETTE_ABI_VERSION, MAP_TYPES } from "@galette/vocabulary";
import { NfBuildError } from "./errors";
import type { NfAnalysis } from "./types";

/** Bump when generated code changes: it is part of every artifact's cache key. */
export const GLUE_VERSION = "6";

/** GALETTE_ABI_VERSION in galette_abi.h. */
export const ABI_VERSION = GALETTE_ABI_VERSION;

export const DEFAULT_MAP_SIZE = 1024;

/** Map settings a chain may impose on an NF build (by #[maps] field name). */
export interface MapOverride {
  type?: string;
  /** max_entries (a chain file's `size`) */
  maxEntries?: number;
}

/** One map of a built NF, as defined in its object and listed in the manifest. */
export interface MapSpec {
  name: string;
  type: string;
  maxEntries: number;
  keyType: string;
  valueType: string;
  keySize: number;
  valueSize: number;
}

/**
 * Each #[maps] field's type and size: the chain's override, else #[map(type, size)] in the
 * source, else lpm_trie for LpmKey keys / hash_map, DEFAULT_MAP_SIZE entries.
 */
export function resolveMaps(analysis: NfAnalysis, overrides: Record<string, MapOverride> = {}): MapSpec[] {
  const fieldNames = new Set(analysis.maps.map((m) => m.name));
  for (const name of Object.keys(overrides)) {
    if (!fieldNames.has(name))
      throw new NfBuildError(
        `map override "${name}" does not match any #[maps] field of ${analysis.name} (${analysis.libFile}); fields: ${
          [...fieldNames].join(", ") || "none"
        }`,
      );
  }
  return analysis.maps.map((m) => {
    const where = `${m.location.file}:${m.location.line}:${m.location.column}`;
    const o = overrides[m.name] ?? {};
    const written =
      o.type ?? m.mapType ?? (/^(nf::)?LpmKey/.test(m.key.text.trim()) ? "lpm_trie" : "hash_map");
    const type = canonicalMapType(written);
    if (!type)
      throw new NfBuildError(
        `${where}: map "${m.name}" has unknown type "${written}"; expected one of ${MAP_TYPES.join(", ")}`,
      );
    const maxEntries = o.maxEntries ?? m.maxEntries ?? DEFAULT_MAP_SIZE;
    if (!Number.isInteger(maxEntries) || maxEntries < 1)
      throw new NfBuildError(`${where}: map "${m.name}" size must be a positive integer, got ${maxEntries}`);
    for (const [what, t] of [
      ["key", m.key],
      ["value", m.value],
    ] as const) {
      if (t.size === undefined)
        throw new NfBuildError(
          `${where}: cannot compute the size of the ${what} type \`${t.text}\` of map "${m.name}": use fixed-width integers, arrays, nf::LpmKeyV4/V6 or #[repr(C)] structs of those defined in lib.rs`,
        );
    }
    if ((type === "array" || type === "percpu_array") && m.key.size !== 4)
      throw new NfBuildError(
        `${where}: map "${m.name}" is an ${type}: its key must be u32, got \`${m.key.text}\``,
      );
    if (type === "lpm_trie" && (m.key.size ?? 0) < 5)
      throw new NfBuildError(
        `${where}: map "${m.name}" is an lpm_trie: its key must be a u32 prefix length followed by the address (use nf::LpmKeyV4 or nf::LpmKeyV6), got \`${m.key.text}\``,
      );
    return {
      name: m.name,
      type,
      maxEntries,
      keyType: m.key.text,
      valueType: m.value.text,
      keySize: m.key.size as number,
      valueSize: m.value.size as number,
    };
  });
}

/** The author's crate as the glue names it (its crate name is the package name with `-` → `_`). */
export const crateIdent = (analysis: NfAnalysis): string => analysis.name.replaceAll("-", "_");

const USER = "galette_user_nf";

/** `handles` are expressions evaluated inside an unsafe block. */
function bindMaps(analysis: NfAnalysis, handles: string[]): string {
  if (analysis.mapsStructName === undefined) return "";
  return `let maps = unsafe { ${USER}::${analysis.mapsStructName}::__galette_bind([${handles.join(", ")}]) };`;
}

function callPacket(analysis: NfAnalysis): string {
  return analysis.mapsStructName === undefined
    ? `${USER}::packet(&mut pkt) as u32`
    : `${USER}::packet(&mut pkt, &maps) as u32`;
}

/** Compile-time checks that the sizes the maps are defined with are the Rust types' sizes. */
function sizeAsserts(analysis: NfAnalysis, maps: MapSpec[]): string {
  if (analysis.mapsStructName === undefined) return "";
  return maps
    .map(
      (m, i) =>
        `const _: () = assert!(${USER}::${analysis.mapsStructName}::__GALETTE_MAP_SIZES[${i}].0 == ${m.keySize} && ${USER}::${analysis.mapsStructName}::__GALETTE_MAP_SIZES[${i}].1 == ${m.valueSize}, "galette: map ${m.name}: the key/value sizes computed from the source (${m.keySize}/${m.valueSize}) differ from Rust's");`,
    )
    .join("\n");
}

export function generateBpfGlue(analysis: NfAnalysis, maps: MapSpec[]): string {
  const externs = maps.map((m) => `    static nf_map_${m.name}: u8;`).join("\n");
  return `// generated by nf-build (glue v${GLUE_VERSION}) for NF ${analysis.name}: do not edit
#![no_std]
extern crate nf;
extern crate ${crateIdent(analysis)} as ${USER};

${maps.length ? `unsafe extern "C" {\n${externs}\n}\n` : ""}
${sizeAsserts(analysis, maps)}

#[unsafe(no_mangle)]
pub extern "C" fn galette_nf_main(ctx: *mut nf::__private::XdpMd) -> u32 {
    let mut pkt = unsafe { nf::Packet::__from_xdp(ctx) };
    ${bindMaps(
      analysis,
      maps.map((m) => `&raw const nf_map_${m.name}`),
    )}
    ${callPacket(analysis)}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
`;
}

function cType(size: number, text: string): string | undefined {
  // Primitive keys/values get their BTF type (readable `bpftool map dump`); others a size.
  const prims: Record<string, string> = {
    u8: "__u8",
    u16: "__u16",
    u32: "__u32",
    u64: "__u64",
    i8: "__s8",
    i16: "__s16",
    i32: "__s32",
    i64: "__s64",
  };
  const t = prims[text.trim()];
  return t && size > 0 ? t : undefined;
}

export function generateShim(analysis: NfAnalysis, maps: MapSpec[]): string {
  const mapDefs = maps
    .map((m) => {
      const key = cType(m.keySize, m.keyType);
      const value = cType(m.valueSize, m.valueType);
      const lines = [
        `__uint(type, ${BPF_MAP_TYPE_NAMES[m.type as keyof typeof BPF_MAP_TYPE_NAMES]});`,
        `__uint(max_entries, ${m.maxEntries});`,
        key ? `__type(key, ${key});` : `__uint(key_size, ${m.keySize});`,
        value ? `__type(value, ${value});` : `__uint(value_size, ${m.valueSize});`,
      ];
      // the kernel requires LPM tries to be allocated on demand
      if (m.type === "lpm_trie") lines.push("__uint(map_flags, BPF_F_NO_PREALLOC);");
      return `/* #[maps] field ${m.name}: (${m.keyType}, ${m.valueType}) */\nstruct {\n\t${lines.join("\n\t")}\n} nf_map_${m.name} SEC(".maps");`;
    })
    .join("\n\n");
  return `/* generated by nf-build (glue v${GLUE_VERSION}) for NF ${analysis.name}: do not edit */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "galette_nf_maps.h"
#include "galette_trace.h"
#include "galette_cost.h"

${mapDefs}

/* the NF (Rust): returns the index of its Action variant */
extern __u32 galette_nf_main(struct xdp_md *ctx);

/* what the shim does with the variant the NF returned (the verdict, or a tail call that
 * does not come back when the next instance is installed) */
static __always_inline int galette_nf_act(struct xdp_md *ctx, __u32 variant, __u64 *start)
{
\t__u64 *count = bpf_map_lookup_elem(&galette_counts, &variant);
\tif (count)
\t\t*count += 1;
\tstruct galette_action *action = bpf_map_lookup_elem(&galette_actions, &variant);
\tif (!action)
\t\treturn XDP_ABORTED;
\t/* a frame the root program marked for galette trace (tracing off: data_meta == data) */
\t__u32 frame = galette_trace_frame(ctx);
\tif (frame)
\t\tgalette_trace_step(frame, galette_instance_id, variant, action->kind, action->arg);
\tif (action->kind == GALETTE_ACT_TAILCALL) {
\t\t/* timed before: a tail call that succeeds never returns here */
\t\tgalette_cost_end(*start);
\t\t*start = 0;
\t\tbpf_tail_call(ctx, &galette_progs, action->arg);
\t\treturn XDP_DROP; /* empty slot: the next instance is not installed */
\t}
\tif (action->kind == GALETTE_ACT_UPCALL) {
\t\tif (galette_upcall_meta_write(ctx, galette_instance_id, variant))
\t\t\treturn XDP_DROP;
\t\t__u32 slot = galette_xsk_slot(ctx);
\t\tif (slot == 0xffffffff)
\t\t\treturn XDP_DROP;
\t\treturn bpf_redirect_map(&galette_xsks, slot, XDP_DROP);
\t}
\t/* tx: out of the other port (galette_ports: ingress ifindex -> egress); without an
\t * entry (single-port installation) the fallback XDP_TX sends it back out */
\tif (action->kind == GALETTE_ACT_TX)
\t\treturn bpf_redirect_map(&galette_ports, ctx->ingress_ifindex, XDP_TX);
\tif (action->kind == GALETTE_ACT_REFLECT)
\t\treturn XDP_TX;
\tif (action->kind <= GALETTE_ACT_PASS)
\t\treturn action->kind;
\treturn XDP_ABORTED; /* REDIRECT is reserved */
}

SEC("xdp")
int galette_nf(struct xdp_md *ctx)
{
\t/* per-NF cost (galette_cost.h): 0 unless a measuring window is open */
\t__u64 start = galette_cost_start();
\t__u32 variant = galette_nf_main(ctx);
\tint verdict = galette_nf_act(ctx, variant, &start);
\tgalette_cost_end(start);
\treturn verdict;
}

char LICENSE[] SEC("license") = "GPL";
`;
}

export function generateNativeGlue(analysis: NfAnalysis, maps: MapSpec[]): string {
  const std = analysis.usesStd;
  return `// generated by nf-build (glue v${GLUE_VERSION}) for NF ${analysis.name}: do not edit
${std ? "" : "#![no_std]\n"}extern crate nf;
extern crate ${crateIdent(analysis)} as ${USER};

${sizeAsserts(analysis, maps)}

#[unsafe(no_mangle)]
pub extern "C" fn galette_nf_abi_version() -> u32 {
    ${ABI_VERSION}
}

/// # Safety
/// \`pkt\` points to a valid galette_pkt; \`map_fds\` to one fd per #[maps] field, in order.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn galette_nf_packet(pkt: *mut nf::__private::GalettePkt, map_fds: *const i32) -> u32 {
    let _ = map_fds;
    let mut pkt = unsafe { nf::Packet::__from_raw(pkt) };
    ${bindMaps(
      analysis,
      maps.map((_, i) => `nf::__private::MapHandle::fd_only(*map_fds.add(${i}))`),
    )}
    ${callPacket(analysis)}
}

/// # Safety
/// \`pkt\` points to a valid galette_pkt; \`maps\` to one galette_nf_map per #[maps] field, in order.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn galette_nf_packet_mapped(pkt: *mut nf::__private::GalettePkt, maps: *const nf::__private::MapHandle) -> u32 {
    let _ = maps;
    let mut pkt = unsafe { nf::Packet::__from_raw(pkt) };
    ${bindMaps(
      analysis,
      maps.map((_, i) => `*maps.add(${i})`),
    )}
    ${callPacket(analysis)}
}
${
  std
    ? ""
    : `
unsafe extern "C" {
    fn abort() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // a panicking NF must not take the worker down silently in a loop: abort loudly
    unsafe { abort() }
}
`
}`;
}
