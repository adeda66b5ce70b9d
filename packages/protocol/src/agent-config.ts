import { z } from "zod";
import { ReleasePublicKey } from "./release";

/** File names inside a device bundle (`galette device enroll --out DIR`). Other tools rely on them. */
export const BUNDLE_FILES = {
  cert: "device.crt",
  key: "device.key",
  ca: "ca.crt",
  config: "agent.json",
} as const;

/**
 * `agent.json`, the agent's config (`galette-agent --config FILE`). Relative paths are
 * resolved against the directory holding the file, so a bundle can be copied anywhere.
 */
export const AgentConfig = z.object({
  /** e.g. https://10.0.0.1:8443 — the controller's device API */
  controllerUrl: z.url({ protocol: /^https$/, error: "controllerUrl must be an https:// URL" }),
  /**
   * every controller replica's device API (sharing one database): the agent uses
   * controllerUrl first and moves to the next of these when the one it uses stops answering
   */
  controllerUrls: z
    .array(z.url({ protocol: /^https$/, error: "controllerUrls: each must be an https:// URL" }))
    .max(16)
    .optional(),
  /** the device name enrolled (= the certificate's CN) */
  device: z.string().min(1),
  certFile: z.string().min(1).default("device.crt"),
  keyFile: z.string().min(1).default("device.key"),
  caFile: z.string().min(1).default("ca.crt"),
  /** network interface the chain attaches to; set by the operator on the device */
  interface: z.string().min(1).optional(),
  /**
   * instead of `interface`, the two ports of an inline device: the chain runs on both and a
   * frame that exits with `tx` leaves through the other port
   */
  ports: z
    .array(z.string().min(1))
    .length(2, { error: "ports takes exactly two interface names" })
    .refine((p) => p[0] !== p[1], { error: "ports must name two different interfaces" })
    .optional(),
  /** where the agent caches its last good assignment and artifacts */
  dataDir: z.string().min(1).default("/var/lib/galette-agent"),
  pollIntervalSeconds: z.number().positive().default(30),
  statusIntervalSeconds: z.number().positive().default(10),
  workerThreads: z.number().int().positive().default(1),
  /** busy-poll AF_XDP sockets (lowest latency, burns a core) instead of blocking poll() */
  busyPoll: z.boolean().default(false),
  /** hold the ws notification channel; polling alone still converges when false */
  websocket: z.boolean().default(true),
  /**
   * Release public keys (base64 DER SPKI, as in release.pub) the device trusts: it loads
   * only chain versions and NF releases signed by one of them. The starting set: a signed
   * key set from the controller replaces it (key rotation without re-enrolment).
   */
  releaseKeys: z.array(ReleasePublicKey).default([]),
  /**
   * Seconds between per-NF cost measurements (kernel bpf_stats and the XDP NFs' own timing
   * on for `costWindowMs`, then off again; reported with the status); 0 turns measuring off.
   */
  costIntervalSeconds: z.number().nonnegative().default(60),
  costWindowMs: z.number().int().min(10).max(10_000).default(1000),
  /**
   * host:port of the Prometheus metrics endpoint (GET /metrics, plain HTTP, no auth): a
   * loopback address unless metricsAllowRemote, since the metrics name every NF and its
   * traffic. Absent: no endpoint.
   */
  metricsListen: z.string().min(1).max(300).optional(),
  /** serve metricsListen on a non-loopback address (put it behind a firewall or a proxy) */
  metricsAllowRemote: z.boolean().default(false),
  /** development only: install unsigned chains (artifact digests are still checked); warns at every start */
  allowUnsigned: z.boolean().default(false),
});
export type AgentConfig = z.infer<typeof AgentConfig>;
export type AgentConfigInput = z.input<typeof AgentConfig>;
