import { existsSync, readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { homedir } from "node:os";
import { join } from "node:path";
import {
  type AssignChainRequest,
  AssignChainResponse,
  ChainVersionResponse,
  ConfirmDeviceResponse,
  type CreateTokenRequest,
  CreateTokenResponse,
  DevicePlanResponse,
  DeviceSummary,
  describeZodError,
  type EnrollDeviceRequest,
  EnrollDeviceResponse,
  ErrorResponse,
  ListAuditResponse,
  ListChainsResponse,
  ListDevicesResponse,
  ListRolloutsResponse,
  ListSelectorRulesResponse,
  ListTokensResponse,
  type MapEntriesDocument,
  MapEntriesResponse,
  NfReleaseResponse,
  OPERATOR_ROUTES,
  OperatorConfig,
  PlanChainResponse,
  PublishNfResponse,
  type PushChainRequest,
  PushChainResponse,
  RELEASE_ROUTES,
  ReleaseKeySetResponse,
  type RemoveAssignmentRequest,
  RemoveAssignmentResponse,
  RevokeDeviceResponse,
  RevokeTokenResponse,
  ROLLOUT_ROUTES,
  Rollout,
  type SetMapEntriesRequest,
  SignedMapEntriesResponse,
  type SignedReleaseKeySet,
  type SignNfReleaseRequest,
  type StartRolloutRequest,
  type TraceRequest,
  TraceStreamLine,
  type UploadedSignature,
} from "@galette/protocol";
import type { z } from "zod";

/** Where the CLI looks for operator credentials when GALETTE_CONFIG is unset. */
export const DEFAULT_OPERATOR_CONFIG = join(homedir(), ".config", "galette", "cli.json");

/**
 * Operator credentials: the config file ($GALETTE_CONFIG, else ~/.config/galette/cli.json,
 * JSON {url, token, caFile}) with GALETTE_URL, GALETTE_TOKEN and GALETTE_CA (path to the
 * controller's ca.crt) overriding its fields. Errors name what is missing and where from.
 */
export function loadOperatorConfig(env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const file = env.GALETTE_CONFIG || DEFAULT_OPERATOR_CONFIG;
  let fromFile: Record<string, unknown> = {};
  if (existsSync(file)) {
    try {
      fromFile = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`${file}: not valid JSON: ${(err as Error).message}`);
    }
  } else if (env.GALETTE_CONFIG) {
    throw new Error(`GALETTE_CONFIG points at ${file}, which does not exist`);
  }
  const merged = {
    ...fromFile,
    ...(env.GALETTE_URL ? { url: env.GALETTE_URL } : {}),
    ...(env.GALETTE_TOKEN ? { token: env.GALETTE_TOKEN } : {}),
    ...(env.GALETTE_CA ? { caFile: env.GALETTE_CA } : {}),
  };
  const parsed = OperatorConfig.safeParse(merged);
  if (!parsed.success) {
    const missing = describeZodError(parsed.error).join("; ");
    throw new Error(
      `operator credentials incomplete (${missing}): set GALETTE_URL, GALETTE_TOKEN and GALETTE_CA, or write ${file} as {"url", "token", "caFile"}`,
    );
  }
  return parsed.data;
}

/** A typed client of the operator API; every response is validated with the protocol schemas. */
export class OperatorClient {
  private readonly caPem: string;

  constructor(private readonly config: OperatorConfig) {
    if (!existsSync(config.caFile)) throw new Error(`CA certificate ${config.caFile} does not exist`);
    this.caPem = readFileSync(config.caFile, "utf8");
  }

  private async call<S extends z.ZodType>(
    schema: S,
    method: string,
    path: string,
    body?: { json: unknown } | { raw: Buffer; contentType: string },
  ): Promise<z.infer<S>> {
    const url = new URL(path, this.config.url);
    const headers: Record<string, string> = { authorization: `Bearer ${this.config.token}` };
    let payload: Buffer | undefined;
    if (body && "json" in body) {
      payload = Buffer.from(JSON.stringify(body.json));
      headers["content-type"] = "application/json";
    } else if (body) {
      payload = body.raw;
      headers["content-type"] = body.contentType;
    }
    // Node sends a DELETE body without chunked encoding, so the length must be explicit.
    if (payload) headers["content-length"] = String(payload.length);
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      // TLS 1.3 only, as the controller serves it.
      const req = httpsRequest(url, { method, headers, ca: this.caPem, minVersion: "TLSv1.3" }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      });
      req.on("error", (err) => reject(new Error(`${method} ${url.href}: ${err.message}`)));
      req.end(payload);
    });
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new Error(`${method} ${path}: HTTP ${status}, not JSON: ${text.slice(0, 200)}`);
    }
    if (status >= 400) {
      const error = ErrorResponse.safeParse(json);
      const message = error.success ? error.data.error : text.slice(0, 200);
      const details =
        error.success && error.data.details && error.data.details.length > 1
          ? `\n${error.data.details.join("\n")}`
          : "";
      throw new Error(`${message} (HTTP ${status})${details}`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new Error(`${method} ${path}: unexpected response: ${describeZodError(parsed.error).join("; ")}`);
    }
    return parsed.data;
  }

  /**
   * Starts a packet trace on a device and calls `onLine` with each line the controller
   * streams (frames, then the end or an error) until it ends the response.
   */
  async traceDevice(
    name: string,
    request: Partial<TraceRequest>,
    onLine: (line: TraceStreamLine) => void,
  ): Promise<void> {
    const path = OPERATOR_ROUTES.deviceTrace(name);
    const url = new URL(path, this.config.url);
    const payload = Buffer.from(JSON.stringify(request));
    const headers = {
      authorization: `Bearer ${this.config.token}`,
      "content-type": "application/json",
      "content-length": String(payload.length),
    };
    await new Promise<void>((resolve, reject) => {
      const req = httpsRequest(
        url,
        { method: "POST", headers, ca: this.caPem, minVersion: "TLSv1.3" },
        (res) => {
          const status = res.statusCode ?? 0;
          let buffered = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            buffered += chunk;
            if (status >= 400) return;
            let nl = buffered.indexOf("\n");
            while (nl >= 0) {
              const text = buffered.slice(0, nl);
              buffered = buffered.slice(nl + 1);
              nl = buffered.indexOf("\n");
              if (!text) continue;
              const line = TraceStreamLine.safeParse(JSON.parse(text));
              if (!line.success) {
                req.destroy();
                reject(
                  new Error(`POST ${path}: unexpected line: ${describeZodError(line.error).join("; ")}`),
                );
                return;
              }
              onLine(line.data);
            }
          });
          res.on("end", () => {
            if (status < 400) return resolve();
            const error = (() => {
              try {
                return ErrorResponse.safeParse(JSON.parse(buffered));
              } catch {
                return undefined;
              }
            })();
            reject(
              new Error(`${error?.success ? error.data.error : buffered.slice(0, 200)} (HTTP ${status})`),
            );
          });
          res.on("error", reject);
        },
      );
      req.on("error", (err) => reject(new Error(`POST ${url.href}: ${err.message}`)));
      req.end(payload);
    });
  }

  listDevices() {
    return this.call(ListDevicesResponse, "GET", OPERATOR_ROUTES.devices);
  }
  getDevice(name: string) {
    return this.call(DeviceSummary, "GET", OPERATOR_ROUTES.device(name));
  }
  confirmDevice(name: string) {
    return this.call(ConfirmDeviceResponse, "POST", OPERATOR_ROUTES.confirmDevice(name), { json: {} });
  }
  planForDevice(name: string, request: PushChainRequest) {
    return this.call(DevicePlanResponse, "POST", OPERATOR_ROUTES.devicePlan(name), { json: request });
  }
  enrolDevice(request: EnrollDeviceRequest) {
    return this.call(EnrollDeviceResponse, "POST", OPERATOR_ROUTES.devices, { json: request });
  }
  revokeDevice(name: string) {
    return this.call(RevokeDeviceResponse, "POST", OPERATOR_ROUTES.revokeDevice(name));
  }
  createToken(request: CreateTokenRequest) {
    return this.call(CreateTokenResponse, "POST", OPERATOR_ROUTES.tokens, { json: request });
  }
  listTokens() {
    return this.call(ListTokensResponse, "GET", OPERATOR_ROUTES.tokens);
  }
  /** `since`: ISO date; the controller answers oldest first. */
  listAudit(since?: string) {
    const query = since ? `?since=${encodeURIComponent(since)}` : "";
    return this.call(ListAuditResponse, "GET", `${OPERATOR_ROUTES.audit}${query}`);
  }
  revokeToken(name: string) {
    return this.call(RevokeTokenResponse, "POST", OPERATOR_ROUTES.revokeToken(name));
  }
  listChains() {
    return this.call(ListChainsResponse, "GET", OPERATOR_ROUTES.chains);
  }
  getChain(name: string, version?: number) {
    const query = version === undefined ? "" : `?version=${version}`;
    return this.call(ChainVersionResponse, "GET", `${OPERATOR_ROUTES.chain(name)}${query}`);
  }
  /** `signed`: the operator's signature over the version's ChainVersionDocument (chain push --key). */
  pushChain(request: PushChainRequest & { signed?: UploadedSignature }) {
    return this.call(PushChainResponse, "POST", OPERATOR_ROUTES.chains, { json: request });
  }
  /** What a push of this TOML would store, with the releases of the NF builds it would run. */
  planChain(request: PushChainRequest) {
    return this.call(PlanChainResponse, "POST", RELEASE_ROUTES.planChain, { json: request });
  }
  /** A build's manifest and signatures: the latest build, or the one `build` names (digest prefix). */
  getNfRelease(name: string, build?: string) {
    const query = build ? `?build=${encodeURIComponent(build)}` : "";
    return this.call(NfReleaseResponse, "GET", `${RELEASE_ROUTES.nfRelease(name)}${query}`);
  }
  signNfRelease(name: string, request: SignNfReleaseRequest) {
    return this.call(NfReleaseResponse, "POST", RELEASE_ROUTES.nfRelease(name), { json: request });
  }
  getSignedMapEntries(chain: string, map: string) {
    return this.call(SignedMapEntriesResponse, "GET", RELEASE_ROUTES.signedMapEntries(chain, map));
  }
  getReleaseKeySet() {
    return this.call(ReleaseKeySetResponse, "GET", RELEASE_ROUTES.keySet);
  }
  putReleaseKeySet(keySet: SignedReleaseKeySet) {
    return this.call(ReleaseKeySetResponse, "PUT", RELEASE_ROUTES.keySet, { json: { keySet } });
  }
  assignChain(request: AssignChainRequest) {
    return this.call(AssignChainResponse, "POST", OPERATOR_ROUTES.assign, { json: request });
  }
  listSelectorRules() {
    return this.call(ListSelectorRulesResponse, "GET", OPERATOR_ROUTES.assignmentRules);
  }
  removeAssignment(request: RemoveAssignmentRequest) {
    return this.call(RemoveAssignmentResponse, "DELETE", OPERATOR_ROUTES.assignmentRules, { json: request });
  }
  /** `signed`: the signed entries the map holds after the change (map set --key). */
  setMapEntries(
    chain: string,
    map: string,
    request: SetMapEntriesRequest & { signed?: UploadedSignature & { document: MapEntriesDocument } },
  ) {
    return this.call(MapEntriesResponse, "PUT", OPERATOR_ROUTES.mapEntries(chain, map), { json: request });
  }
  getMapEntries(chain: string, map: string) {
    return this.call(MapEntriesResponse, "GET", OPERATOR_ROUTES.mapEntries(chain, map));
  }
  startRollout(request: StartRolloutRequest) {
    return this.call(Rollout, "POST", ROLLOUT_ROUTES.rollouts, { json: request });
  }
  listRollouts() {
    return this.call(ListRolloutsResponse, "GET", ROLLOUT_ROUTES.rollouts);
  }
  getRollout(id: number) {
    return this.call(Rollout, "GET", ROLLOUT_ROUTES.rollout(id));
  }
  /** pause, resume or abort */
  changeRollout(id: number, action: "pause" | "resume" | "abort") {
    return this.call(Rollout, "POST", ROLLOUT_ROUTES[action](id));
  }
  /** `archive`: a tar (or tar.gz) of the crate directory. */
  publishNf(archive: Buffer, name?: string) {
    const path = name ? `${OPERATOR_ROUTES.nfs}?name=${encodeURIComponent(name)}` : OPERATOR_ROUTES.nfs;
    return this.call(PublishNfResponse, "POST", path, { raw: archive, contentType: "application/x-tar" });
  }
}
