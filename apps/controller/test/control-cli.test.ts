import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentConfig } from "@galette/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, galetteWithEmptyConfig, runServe, type ServeProcess, stopServe } from "./helpers";

const scratch = mkdtempSync(join(tmpdir(), "galette-control-cli-"));
const data = join(scratch, "data");
const galette = galetteWithEmptyConfig(scratch);

describe("galette pki/token/controller/device CLI", () => {
  let server: ServeProcess | undefined;
  let url = "";
  let token = "";
  let adminToken = "";
  const operatorEnv = () => ({ GALETTE_URL: url, GALETTE_TOKEN: token, GALETTE_CA: join(data, "ca.crt") });

  beforeAll(async () => {
    const init = await galette([
      "pki",
      "init",
      "--data",
      data,
      "--hosts",
      "127.0.0.1,localhost,controller.lan",
    ]);
    expect(init.code, init.stderr).toBe(0);
    // The first token made on the data dir is an admin token; it makes the others over the API.
    const first = await galette(["token", "create", "--data", data, "--name", "root"]);
    expect(first.code, first.stderr).toBe(0);
    adminToken = first.stdout.trim();
    server = await runServe(data, ["--listen", "127.0.0.1:0"]);
    url = (JSON.parse(readFileSync(join(data, "controller.json"), "utf8")) as { url: string }).url;
    const created = await galette(
      ["token", "create", "--name", "ci", "--scopes", "admin,publish,deploy,read", "--expires", "30d"],
      { ...operatorEnv(), GALETTE_TOKEN: adminToken },
    );
    expect(created.code, created.stderr).toBe(0);
    token = created.stdout.trim();
  }, 180_000);

  afterAll(async () => {
    await stopServe(server);
    rmSync(scratch, { recursive: true, force: true });
  });

  it("pki init wrote the CA and server cert with 0600 keys, and refuses to run twice", async () => {
    for (const key of ["ca.key", "server.key"]) expect(statSync(join(data, key)).mode & 0o777).toBe(0o600);
    expect(token).toMatch(/^glt_/);
    const again = await galette(["pki", "init", "--data", data]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already has a CA/);
  });

  it("enrols through the operator API and writes a bundle an agent can use", async () => {
    const bundle = join(scratch, "pi-1");
    const r = await galette(
      ["device", "enroll", "pi-1", "--labels", "role=edge,site=lab", "--out", bundle],
      operatorEnv(),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(join(bundle, "device.key")).mode & 0o777).toBe(0o600);
    const config = AgentConfig.parse(JSON.parse(readFileSync(join(bundle, "agent.json"), "utf8")));
    expect(config).toMatchObject({ controllerUrl: url, device: "pi-1", certFile: "device.crt" });
    const res = await call(url, readFileSync(join(bundle, "ca.crt"), "utf8"), "/v1/device/assignment", {
      client: {
        certPem: readFileSync(join(bundle, "device.crt"), "utf8"),
        keyPem: readFileSync(join(bundle, "device.key"), "utf8"),
      },
    });
    expect(res.status).toBe(200);
    const again = await galette(["device", "enroll", "pi-1", "--out", join(scratch, "pi-1b")], operatorEnv());
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(
      /pi-1 is already enrolled \(serial [0-9a-f]+\); revoke it first \(HTTP 409\)/,
    );
  });

  it("enrols and revokes directly on the data dir; the running controller refuses at once", async () => {
    const bundle = join(scratch, "pi-2");
    const enrolled = await galette(["device", "enroll", "pi-2", "--data", data, "--out", bundle]);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    expect(
      AgentConfig.parse(JSON.parse(readFileSync(join(bundle, "agent.json"), "utf8"))).controllerUrl,
    ).toBe(url);
    const client = {
      certPem: readFileSync(join(bundle, "device.crt"), "utf8"),
      keyPem: readFileSync(join(bundle, "device.key"), "utf8"),
    };
    const caPem = readFileSync(join(data, "ca.crt"), "utf8");
    expect((await call(url, caPem, "/v1/device/assignment", { client })).status).toBe(200);
    const revoked = await galette(["device", "revoke", "pi-2", "--data", data]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/^revoked pi-2 \(serial [0-9a-f]+\)/);
    expect((await call(url, caPem, "/v1/device/assignment", { client })).status).toBe(403);
  });

  it("lists devices through the API and on the data dir", async () => {
    const api = await galette(["device", "list"], operatorEnv());
    expect(api.code, api.stderr).toBe(0);
    const lines = api.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+LABELS\s+STATE/);
    expect(lines[1]).toMatch(/^pi-1\s+role=edge,site=lab\s+-/);
    expect(lines[2]).toMatch(/^pi-2\s+-\s+revoked/);
    const direct = await galette(["device", "list", "--data", data, "--json"]);
    const devices = (
      JSON.parse(direct.stdout) as { devices: Array<{ name: string; revokedAt: string | null }> }
    ).devices;
    expect(devices.map((d) => [d.name, d.revokedAt !== null])).toEqual([
      ["pi-1", false],
      ["pi-2", true],
    ]);
  });

  it("makes the first token admin, asks for scopes after that, lists tokens without secrets and shows the audit log", async () => {
    const second = await galette(["token", "create", "--data", data, "--name", "again"]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(
      /--scopes: give the token's scopes, among admin, publish, deploy, read, metrics/,
    );
    const unknown = await galette(["token", "create", "--name", "x", "--scopes", "read,root"], operatorEnv());
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(
      /--scopes: unknown scope "root" \(known: admin, publish, deploy, read, metrics, trace\)/,
    );
    const badExpiry = await galette(
      ["token", "create", "--name", "x", "--scopes", "read", "--expires", "soon"],
      operatorEnv(),
    );
    expect(badExpiry.code).toBe(1);
    expect(badExpiry.stderr).toMatch(/--expires "soon": expected e.g. 30d, 12h or an ISO date/);

    const listed = await galette(["token", "list"], operatorEnv());
    expect(listed.code, listed.stderr).toBe(0);
    const lines = listed.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+SCOPES\s+CREATED\s+LAST USED\s+EXPIRES$/);
    expect(listed.stdout).toMatch(/^root\s+admin\s+\S+\s+\S+\s+\S+$/m);
    expect(listed.stdout).toMatch(/^ci\s+admin,publish,deploy,read\s+/m);
    expect(listed.stdout).not.toContain(token);
    expect(listed.stdout).not.toContain(adminToken);
    const direct = await galette(["token", "list", "--data", data, "--json"]);
    const tokens = (JSON.parse(direct.stdout) as { tokens: Array<{ name: string; expiresAt: string }> })
      .tokens;
    const ci = tokens.find((t) => t.name === "ci")!;
    expect(Math.abs(Date.parse(ci.expiresAt) - (Date.now() + 30 * 86_400_000))).toBeLessThan(3_600_000);

    const audit = await galette(["audit", "--since", "1h"], operatorEnv());
    expect(audit.code, audit.stderr).toBe(0);
    expect(audit.stdout).toMatch(/^AT\s+WHO\s+FROM\s+WHAT\s+TARGET\s+STATUS$/m);
    expect(audit.stdout).toMatch(/\slocal:\S+\s+local:\S+\s+CLI galette token create --data\s+root\s+200$/m);
    expect(audit.stdout).toMatch(/\sroot\s+127\.0\.0\.1\s+POST \/v1\/tokens\s+ci\s+201$/m);
    expect(audit.stdout).toMatch(/\sci\s+127\.0\.0\.1\s+POST \/v1\/devices\s+pi-1\s+201$/m);
    const later = await galette(
      ["audit", "--since", new Date(Date.now() + 60_000).toISOString(), "--json"],
      operatorEnv(),
    );
    expect(JSON.parse(later.stdout)).toEqual({ entries: [] });
    const badSince = await galette(["audit", "--since", "last week"], operatorEnv());
    expect(badSince.code).toBe(1);
    expect(badSince.stderr).toMatch(/--since "last week": expected e.g. 24h, 7d or an ISO date/);
  });

  it("names what is missing when operator credentials are incomplete, and rejects a bad token", async () => {
    const missing = await galette(["device", "list"], { GALETTE_URL: url });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(
      /operator credentials incomplete \(token: .*\): set GALETTE_URL, GALETTE_TOKEN and GALETTE_CA/,
    );
    const bad = await galette(["device", "list"], { ...operatorEnv(), GALETTE_TOKEN: "glt_wrong" });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid bearer token \(HTTP 401\)/);
    const labels = await galette(
      ["device", "enroll", "x", "--labels", "oops", "--out", join(scratch, "x")],
      operatorEnv(),
    );
    expect(labels.stderr).toMatch(/--labels: "oops" is not key=value/);
  });

  it("publishes an NF, pushes a chain and assigns it, naming the problem when a push is refused", async () => {
    const published = await galette(["nf", "publish", "nf-examples/macswap"], operatorEnv());
    expect(published.code, published.stderr).toBe(0);
    expect(published.stdout).toMatch(/nf-examples\/macswap: published macswap \(built, \d+ artifacts\)/);

    const pushed = await galette(["chain", "push", "chains/macswap.toml"], operatorEnv());
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toMatch(/pushed macswap version \d+ \(1 NF instances\)/);

    const enrolled = await galette(
      ["device", "enroll", "cli-assignee", "--labels", "site=lab", "--out", join(scratch, "assignee")],
      operatorEnv(),
    );
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const assigned = await galette(["chain", "assign", "macswap", "--selector", "site=lab"], operatorEnv());
    expect(assigned.code, assigned.stderr).toBe(0);
    expect(assigned.stdout).toContain("assigned macswap (latest) to cli-assignee");
    expect(assigned.stdout).toMatch(
      /rule \d+: devices labelled site=lab follow it, also ones enrolled later/,
    );
    const listed = await galette(["device", "list"], operatorEnv());
    expect(listed.stdout).toMatch(/^cli-assignee\s+site=lab\s+\S+\s+macswap@latest\s+rule \d+ \(site=lab\)/m);
    const unassigned = await galette(["chain", "unassign", "--selector", "site=lab"], operatorEnv());
    expect(unassigned.code, unassigned.stderr).toBe(0);
    expect(unassigned.stdout).toMatch(/removed rule \d+ \(site=lab → macswap\)\nchanged: cli-assignee/);
    const noRule = await galette(["chain", "unassign", "--selector", "site=lab"], operatorEnv());
    expect(noRule.code).toBe(1);
    expect(noRule.stderr).toContain("no selector rule has exactly the selector site=lab (HTTP 404)");

    const bad = join(scratch, "bad-arity.toml");
    writeFileSync(
      bad,
      '[functions.macswap]\n[[links]]\nfrom = "rx"\nto = ["macswap"]\n[[links]]\nfrom = "macswap"\nto = ["tx", "drop"]\n',
    );
    const refused = await galette(["chain", "push", bad], operatorEnv());
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/macswap.*2 link target.*1 variant/);
  }, 300_000);
});
