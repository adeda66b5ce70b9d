/**
 * Packet trace (`galette trace`): one traced frame's path through the installed chain, as
 * the local tracer prints it and as an agent streams it to the controller for
 * `galette trace --device`.
 */
import { z } from "zod";

export const TraceTier = z.enum(["xdp", "userland"]);

/** What a step's action did: a verdict, or a transition to another NF instance. */
export const TraceActionKind = z.enum([
  "abort",
  "drop",
  "pass",
  "tx",
  "redirect",
  "reflect",
  "tailcall",
  "upcall",
]);

export const TraceStep = z.object({
  /** NF instance name (or `#ID` when the installation no longer has it) */
  nf: z.string(),
  instance: z.number().int().nonnegative(),
  tier: TraceTier,
  /** the Action variant the NF returned (`#N` when outside its table) */
  variant: z.string(),
  action: TraceActionKind,
  /** NF instance a tailcall/upcall continues with */
  target: z.string().optional(),
  /** ns after the frame arrived at the root program, when the NF returned */
  elapsedNs: z.number(),
});
export type TraceStep = z.infer<typeof TraceStep>;

export const TraceVerdict = z.enum(["abort", "drop", "pass", "tx", "redirect", "reflect", "incomplete"]);

export const TracedFrame = z.object({
  /** id the root program gave the frame (unique per installation until it wraps) */
  frame: z.number().int().nonnegative(),
  /** the port it arrived on */
  iface: z.string(),
  /** ISO wall-clock time of arrival */
  time: z.string(),
  /** CLOCK_MONOTONIC ns of arrival (decimal string: beyond 2^53 after 104 days of uptime) */
  monotonicNs: z.string(),
  len: z.number().int().nonnegative(),
  path: z.array(TraceStep),
  /** the final verdict; `incomplete` when records were lost or the frame vanished (no worker) */
  verdict: TraceVerdict,
  /** `access-control→weak-classifier→dpi (userland)→tx` */
  summary: z.string(),
  /** the frame's first bytes, base64 (at most 128) */
  data: z.string().optional(),
});
export type TracedFrame = z.infer<typeof TracedFrame>;

/** `galette trace --device NAME`: what the operator asks for (checked again by the agent). */
export const TraceRequest = z.object({
  filter: z.string().max(512).default(""),
  /** trace 1 in `sample` matching frames */
  sample: z.number().int().min(1).max(1_000_000).default(1),
  count: z.number().int().min(1).max(10_000).default(10),
  /** give up after this many seconds */
  timeoutSeconds: z.number().int().min(1).max(600).default(30),
  /** include the frames' first bytes (packet contents) */
  withData: z.boolean().default(false),
});
export type TraceRequest = z.infer<typeof TraceRequest>;

/** A trace session's id: the controller picks it, the device names it when it uploads. */
export const TraceId = z.string().regex(/^[0-9a-f]{32}$/, "expected a trace id: 32 lowercase hex digits");

/** POST /v1/device/traces/:id: frames the device traced since its last upload. */
export const TraceUpload = z.object({
  frames: z.array(TracedFrame).max(1000),
  /** the trace ended on the device (count reached, timed out, or failed) */
  done: z.boolean().default(false),
  /** why it failed on the device (e.g. no chain installed) */
  error: z.string().max(1000).optional(),
});
export type TraceUpload = z.infer<typeof TraceUpload>;

/** One line of `POST /v1/devices/:name/trace`'s NDJSON response. */
export const TraceStreamLine = z.discriminatedUnion("type", [
  z.object({ type: z.literal("frame"), frame: TracedFrame }),
  z.object({ type: z.literal("end"), frames: z.number().int().nonnegative(), reason: z.string() }),
  z.object({ type: z.literal("error"), error: z.string() }),
]);
export type TraceStreamLine = z.infer<typeof TraceStreamLine>;
