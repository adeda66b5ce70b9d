import { CPU_TRIPLES, cpuForMachine, MAP_TYPES } from "@galette/vocabulary";
import { z } from "zod";

export { CPU_TRIPLES, MAP_TYPES };

/** Version of the messages in this package. Agents send it; the controller refuses other majors. */
export const PROTOCOL_VERSION = 2;

/** HTTP header an agent uses to state the protocol version it speaks. */
export const PROTOCOL_VERSION_HEADER = "x-galette-protocol";

export const Uuid = z
  .string()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, "expected a lowercase UUID");

/** sha256 of an artifact's bytes, 64 lowercase hex digits (no prefix). Artifacts are fetched by it. */
export const Sha256Digest = z
  .string()
  .regex(/^[0-9a-f]{64}$/, "expected a sha256 digest: 64 lowercase hex digits");
export type Sha256Digest = z.infer<typeof Sha256Digest>;

/** Device, chain, NF and token names: what an operator types; safe in paths, URLs and cert CNs. */
export const Name = z
  .string()
  .min(1, "name is empty")
  .max(63, "name is longer than 63 characters")
  .regex(
    /^[a-zA-Z0-9][a-zA-Z0-9._-]*$/,
    "name may contain only letters, digits, '.', '_' and '-', starting with a letter or digit",
  );

/** Labels select devices (`role=edge`). Keys and values follow the same rules as names. */
export const Labels = z.record(Name, Name);
export type Labels = z.infer<typeof Labels>;

/** Rust target triples we build native NF libraries for (the one CPU table is in @galette/vocabulary). */
export const CpuTriple = z.enum(CPU_TRIPLES);
export type CpuTriple = z.infer<typeof CpuTriple>;

/** `uname -m` → the triple whose native libraries the device runs; undefined if we do not build for it. */
export function tripleForMachine(machine: string): CpuTriple | undefined {
  return cpuForMachine(machine)?.triple;
}

/** Canonical BPF map type names (chain files may use other spellings; they are canonicalised to these). */
export const MapType = z.enum(MAP_TYPES);
export type MapType = z.infer<typeof MapType>;

/** Map keys and values travel as lowercase hex of their raw bytes (the layout the NF's Rust types define). */
export const HexBytes = z
  .string()
  .regex(/^([0-9a-f]{2})+$/, "expected lowercase hex bytes (an even number of 0-9a-f digits)");

export const MapEntry = z.object({ key: HexBytes, value: HexBytes });
export type MapEntry = z.infer<typeof MapEntry>;

/** Every 4xx/5xx body. `error` names the problem (file/line/key where there is one). */
export const ErrorResponse = z.object({
  error: z.string(),
  details: z.array(z.string()).optional(),
});
export type ErrorResponse = z.infer<typeof ErrorResponse>;

/** Kinds of stored artifact. */
export const ArtifactKind = z.enum(["bpf-object", "native-lib", "crate-source"]);
export type ArtifactKind = z.infer<typeof ArtifactKind>;

export const ArtifactMeta = z.object({
  digest: Sha256Digest,
  size: z.number().int().nonnegative(),
  kind: ArtifactKind,
  /** NF (crate) name the artifact was built from */
  nf: Name,
  /** only for native-lib */
  triple: CpuTriple.optional(),
});
export type ArtifactMeta = z.infer<typeof ArtifactMeta>;

/** Turn a zod error into one line per issue, each naming the path of the offending key. */
export function describeZodError(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map(String).join(".") : "(body)";
    return `${path}: ${issue.message}`;
  });
}
