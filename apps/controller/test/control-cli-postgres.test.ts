import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, galetteWithEmptyConfig, runServe, type ServeProcess, stopServe, usePostgres } from "./helpers";

const scratch = mkdtempSync(join(tmpdir(), "galette-cli-pg-"));
const data = join(scratch, "data");
/** In every URL the tests give: no output may ever show it (the test server trusts any password). */
const PASSWORD = "s3cret-Pw";

const galette = galetteWithEmptyConfig(scratch);

/** A failed command: exit 1, `pattern` in its error, the password nowhere. */
function expectRefused(r: { code: number; stdout: string; stderr: string }, pattern: RegExp): void {
  expect(r.code, r.stdout).toBe(1);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr + r.stdout).not.toContain(PASSWORD);
}

describe("direct CLI commands on a controller's PostgreSQL database (--database)", () => {
  const postgres = usePostgres();
  let database = "";
  let server: ServeProcess | undefined;
  let url = "";
  let adminToken = "";
  const operatorEnv = () => ({
    GALETTE_URL: url,
    GALETTE_TOKEN: adminToken,
    GALETTE_CA: join(data, "ca.crt"),
  });

  beforeAll(async () => {
    database = postgres()
      .createDatabase("cli_direct")
      .replace("postgres://galette@", `postgres://galette:${PASSWORD}@`);
    const init = await galette(["pki", "init", "--data", data, "--hosts", "127.0.0.1,localhost"]);
    expect(init.code, init.stderr).toBe(0);
  }, 180_000);

  afterAll(async () => {
    await stopServe(server);
    rmSync(scratch, { recursive: true, force: true });
  });

  it("refuses a database no controller has migrated, saying what to run, and changes nothing", async () => {
    const r = await galette(["token", "create", "--database", database]);
    expectRefused(
      r,
      /has no Galette schema yet: start `galette controller serve --data DIR --database postgres:\/\/galette:\*\*\*@/,
    );
    // nothing created on the way: no schema, no tables
    const tables = await galette(["token", "list", "--database", database]);
    expectRefused(tables, /no Galette schema yet/);
  }, 120_000);

  it("makes the first (admin) token on the database; a controller serving it accepts the token", async () => {
    server = await runServe(data, ["--database", database, "--listen", "127.0.0.1:0"]);
    const output = server.output();
    expect(existsSync(join(data, "controller.json")), output).toBe(true);
    expect(output).not.toContain(PASSWORD);
    url = (JSON.parse(readFileSync(join(data, "controller.json"), "utf8")) as { url: string }).url;

    // --database alone: a token needs no PKI
    const first = await galette(["token", "create", "--database", database, "--name", "root"]);
    expect(first.code, first.stderr).toBe(0);
    adminToken = first.stdout.trim();
    expect(adminToken).toMatch(/^glt_/);
    // a second token made directly must name its scopes, like on a data directory
    const second = await galette(["token", "create", "--database", database, "--name", "ops"]);
    expectRefused(second, /--scopes: give the token's scopes/);

    const listed = await galette(["token", "list", "--json"], operatorEnv());
    expect(listed.code, listed.stderr).toBe(0);
    const tokens = (JSON.parse(listed.stdout) as { tokens: Array<{ name: string; scopes: string[] }> })
      .tokens;
    expect(tokens).toEqual([expect.objectContaining({ name: "root", scopes: ["admin"] })]);

    // enrolment signs a certificate: --data for the issuing CA, --database for the state
    const noPki = await galette([
      "device",
      "enroll",
      "pi-1",
      "--database",
      database,
      "--out",
      join(scratch, "x"),
    ]);
    expectRefused(noPki, /device enroll --database needs --data DIR too/);
    const bundle = join(scratch, "pi-1");
    const enrolled = await galette([
      "device",
      "enroll",
      "pi-1",
      "--data",
      data,
      "--database",
      database,
      "--out",
      bundle,
    ]);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const client = {
      certPem: readFileSync(join(bundle, "device.crt"), "utf8"),
      keyPem: readFileSync(join(bundle, "device.key"), "utf8"),
    };
    const caPem = readFileSync(join(data, "ca.crt"), "utf8");
    expect((await call(url, caPem, "/v1/device/assignment", { client })).status).toBe(200);

    const devices = await galette(["device", "list", "--database", database, "--json"]);
    expect(devices.code, devices.stderr).toBe(0);
    expect(JSON.parse(devices.stdout).devices).toEqual([expect.objectContaining({ name: "pi-1" })]);

    const revoked = await galette(["device", "revoke", "pi-1", "--database", database]);
    expect(revoked.code, revoked.stderr).toBe(0);
    // the serving controller reads the same database: refused from the next request on
    expect((await call(url, caPem, "/v1/device/assignment", { client })).status).toBe(403);

    // the audit log, read directly and through the API: the direct calls are in it
    const audit = await galette(["audit", "--database", database, "--json"]);
    expect(audit.code, audit.stderr).toBe(0);
    const routes = (
      JSON.parse(audit.stdout) as { entries: Array<{ route: string; status: number }> }
    ).entries.map((e) => `${e.route} ${e.status}`);
    expect(routes).toEqual([
      "galette token create --database 200",
      "galette token create --database 400",
      "galette device enroll --database 200",
      "galette device revoke --database 200",
    ]);
    const apiAudit = await galette(["audit", "--json"], operatorEnv());
    expect(apiAudit.code, apiAudit.stderr).toBe(0);
    expect(apiAudit.stdout).toContain("galette device revoke --database");
  }, 300_000);

  it("names what is wrong with a --database it cannot use, never showing the password", async () => {
    const withPassword = (u: string) => u.replace("postgres://galette@", `postgres://galette:${PASSWORD}@`);
    expectRefused(
      await galette(["token", "list", "--database", `mysql://galette:${PASSWORD}@db/galette`]),
      /--database "mysql:\/\/galette:\*\*\*@db\/galette": expected a postgres:\/\/ or postgresql:\/\/ URL/,
    );
    expectRefused(
      await galette(["token", "list", "--database", `postgres://galette:${PASSWORD}@[::1/galette`]),
      /--database: not a valid URL .*the value is not shown/,
    );
    expectRefused(
      await galette(["audit", "--database", `postgres://galette:${PASSWORD}@127.0.0.1:5432`]),
      /no database name/,
    );
    // a closed port: nothing listens there
    expectRefused(
      await galette([
        "token",
        "list",
        "--database",
        withPassword(postgres().url("x")).replace(`:${postgres().port}/`, ":1/"),
      ]),
      /PostgreSQL postgres:\/\/galette:\*\*\*@127\.0\.0\.1:1\/x: cannot reach the PostgreSQL server at 127\.0\.0\.1:1 \(ECONNREFUSED\)/,
    );
    expectRefused(
      await galette(["device", "list", "--database", withPassword(postgres().url("no_such_db"))]),
      /database "no_such_db" does not exist: create it first \(`createdb -O galette no_such_db`\)/,
    );
    // the same checks for `controller serve`, before it starts anything
    expectRefused(
      await galette(["controller", "serve", "--data", data, "--database", ""]),
      /--database: not a valid URL/,
    );
  }, 300_000);
});
