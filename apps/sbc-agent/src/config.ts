import { readFileSync } from "node:fs";
import path from "node:path";
import { AgentConfig, describeZodError, releasePublicKey } from "@galette/protocol";
import { z } from "zod";

/**
 * The agent's config file: the protocol's AgentConfig plus device-local settings the
 * controller never sees (the network namespace of the interface, the installer's state dir).
 */
export const AgentFileConfig = AgentConfig.extend({
  /** network namespace (under /run/netns) holding `interface`; unset = the agent's own */
  netns: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, "netns must be a namespace name under /run/netns")
    .optional(),
  /**
   * XDP attach mode: "auto" (native when the capability probe's attach succeeded in driver
   * mode, else generic), "native" (driver mode, fastest) or "generic" (skb mode, for NICs
   * whose driver has no XDP support, e.g. some SBC on-board Ethernet).
   */
  xdpMode: z.enum(["auto", "native", "generic"]).default("auto"),
  /** where the installer keeps its installation records (tmpfs: they die with the pins at reboot) */
  stateDir: z.string().min(1).default("/run/galette"),
});
export type AgentFileConfig = z.infer<typeof AgentFileConfig>;

/** A loaded config: every path absolute, the interface required. */
export interface ResolvedAgentConfig extends AgentFileConfig {
  interface: string;
  file: string;
}

export class AgentConfigError extends Error {
  override name = "AgentConfigError";
}

/**
 * Reads and validates `file`. Relative paths resolve against the file's directory (a
 * bundle can be copied anywhere). Errors name the file and each offending key.
 */
export function loadAgentConfig(file: string, overrides: Partial<AgentFileConfig> = {}): ResolvedAgentConfig {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, "utf8");
  } catch (err) {
    throw new AgentConfigError(`${abs}: cannot read the agent config: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new AgentConfigError(`${abs}: not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new AgentConfigError(`${abs}: expected a JSON object`);
  const parsed = AgentFileConfig.safeParse({ ...(raw as object), ...overrides });
  if (!parsed.success)
    throw new AgentConfigError(
      `${abs}: invalid agent config:\n  ${describeZodError(parsed.error).join("\n  ")}`,
    );
  const config = parsed.data;
  if (config.ports && config.interface)
    throw new AgentConfigError(`${abs}: set either interface (one port) or ports (two), not both`);
  // a pair of ports: the installation is named after the first, the second is its peer
  if (config.ports) config.interface = config.ports[0];
  if (!config.interface)
    throw new AgentConfigError(
      `${abs}: interface: not set (the network interface the chain attaches to, e.g. "eth0")`,
    );
  config.releaseKeys.forEach((key, i) => {
    try {
      releasePublicKey(key);
    } catch (err) {
      throw new AgentConfigError(
        `${abs}: releaseKeys.${i}: not a release public key: ${(err as Error).message}`,
      );
    }
  });
  const dir = path.dirname(abs);
  const resolve = (p: string) => path.resolve(dir, p);
  return {
    ...config,
    interface: config.interface,
    certFile: resolve(config.certFile),
    keyFile: resolve(config.keyFile),
    caFile: resolve(config.caFile),
    dataDir: resolve(config.dataDir),
    stateDir: resolve(config.stateDir),
    file: abs,
  };
}
