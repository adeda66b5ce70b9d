import {
  linkSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChainVersionResponse } from "@galette/protocol";
import { create as createTar } from "tar";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDir } from "../src/control";
import {
  ACL_RS,
  ACL_TOML,
  call,
  type Harness,
  MACSWAP_RS,
  MACSWAP_TOML,
  startHarness,
  tarOf,
  writeCrate,
} from "./helpers";

const ARCHIVE_LIMIT = 256 * 1024;

describe("operator API", () => {
  let h: Harness;
  let crates: string;
  const op = (path: string, options: Parameters<Harness["call"]>[1] = {}) =>
    h.call(path, { token: h.token, ...options });
  const tarUpload = (body: Buffer) =>
    op("/v1/nfs", { method: "POST", headers: { "content-type": "application/x-tar" }, body });
  const storedNfDirs = () => {
    try {
      return readdirSync(join(h.dir, "nf-sources")).filter((n) => !n.startsWith("."));
    } catch {
      return [];
    }
  };

  beforeAll(async () => {
    h = await startHarness({ maxNfArchiveBytes: ARCHIVE_LIMIT });
    crates = mkdtempSync(join(tmpdir(), "galette-crates-"));
  });
  afterAll(async () => {
    await h?.cleanup();
    rmSync(crates, { recursive: true, force: true });
  });

  it("rejects requests without a token or with a wrong one, on every operator route", async () => {
    const routes: Array<[string, string]> = [
      ["GET", "/v1/devices"],
      ["POST", "/v1/devices"],
      ["POST", "/v1/devices/pi-1/revoke"],
      ["POST", "/v1/tokens"],
      ["POST", "/v1/tokens/ci/revoke"],
      ["GET", "/v1/chains"],
      ["POST", "/v1/chains"],
      ["POST", "/v1/assignments"],
      ["GET", "/v1/assignments"],
      ["DELETE", "/v1/assignments"],
      ["GET", "/v1/chains/acl/maps/acl.allow_list/entries"],
      ["PUT", "/v1/chains/acl/maps/acl.allow_list/entries"],
      ["POST", "/v1/nfs"],
    ];
    for (const [method, path] of routes) {
      const body = method === "GET" ? undefined : {};
      const none = await h.call(path, { method, body });
      expect(none.status, `${method} ${path}`).toBe(401);
      expect(none.json().error).toMatch(/missing bearer token/);
      const wrong = await h.call(path, { method, body, token: "glt_not-a-token" });
      expect(wrong.status, `${method} ${path}`).toBe(401);
      expect(wrong.json().error).toBe("invalid bearer token");
    }
    expect((await h.call("/healthz")).status).toBe(200);
    expect((await h.call("/metrics")).status).toBe(401);
  });

  it("enrols devices, refuses bad names, bad labels and duplicates", async () => {
    const ok = await op("/v1/devices", { method: "POST", body: { name: "pi-1", labels: { role: "edge" } } });
    expect(ok.status).toBe(201);
    expect(ok.json().controllerUrl).toBe(h.controller.url);
    const badName = await op("/v1/devices", { method: "POST", body: { name: "../etc", labels: {} } });
    expect(badName.status).toBe(400);
    expect(badName.json().error).toMatch(/^invalid enrol request: name: /);
    const badLabels = await op("/v1/devices", {
      method: "POST",
      body: { name: "pi-2", labels: { role: "a b" } },
    });
    expect(badLabels.status).toBe(400);
    expect(badLabels.json().error).toMatch(/labels\.role/);
    const dup = await op("/v1/devices", { method: "POST", body: { name: "pi-1" } });
    expect(dup.status).toBe(409);
    expect(dup.json().error).toMatch(/pi-1 is already enrolled/);
    const notJson = await op("/v1/devices", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{name:",
    });
    expect(notJson.status).toBe(400);
    const list = await op("/v1/devices");
    expect(list.json<{ devices: Array<{ name: string }> }>().devices.map((d) => d.name)).toEqual(["pi-1"]);
  });

  it("revokes an enrolled device once, and names an unknown one", async () => {
    await op("/v1/devices", { method: "POST", body: { name: "old-1" } });
    expect((await op("/v1/devices/old-1/revoke", { method: "POST" })).status).toBe(200);
    const again = await op("/v1/devices/old-1/revoke", { method: "POST" });
    expect(again.status).toBe(409);
    const unknown = await op("/v1/devices/nope/revoke", { method: "POST" });
    expect(unknown.status).toBe(404);
    expect(unknown.json().error).toBe("device nope is not enrolled");
  });

  it("creates tokens that work until revoked, and refuses a token request without a name", async () => {
    const created = await op("/v1/tokens", { method: "POST", body: { name: "ci", scopes: ["read"] } });
    expect(created.status).toBe(201);
    const token = created.json<{ token: string }>().token;
    expect((await h.call("/v1/devices", { token })).status).toBe(200);
    const revoked = await op("/v1/tokens/ci/revoke", { method: "POST" });
    expect(revoked.json()).toEqual({ name: "ci", revoked: 1 });
    expect((await h.call("/v1/devices", { token })).status).toBe(401);
    const unknown = await op("/v1/tokens/ci/revoke", { method: "POST" });
    expect(unknown.status).toBe(404);
    expect(unknown.json().error).toBe("no token named ci");
    const bad = await op("/v1/tokens", { method: "POST", body: {} });
    expect(bad.status).toBe(400);
    expect(bad.json().error).toMatch(/^invalid token request: name:/);
    // Only the hash is stored.
    const db = readFileSync(join(h.dir, "galette.db"));
    expect(db.includes(Buffer.from(token))).toBe(false);
  });

  it("publishes NF crates and rejects traversal, links, oversized and non-tar uploads, storing nothing", async () => {
    writeCrate(crates, "macswap", MACSWAP_RS);
    const ok = await tarUpload(tarOf(crates, "macswap"));
    expect(ok.status, ok.body.toString()).toBe(201);
    expect(ok.json()).toMatchObject({ name: "macswap", build: "stored-unbuilt" });
    writeCrate(crates, "acl", ACL_RS);
    expect((await tarUpload(tarOf(crates, "acl"))).status).toBe(201);
    const before = storedNfDirs();

    // ../ in an entry path
    const evil = mkdtempSync(join(tmpdir(), "galette-evil-"));
    const inner = join(evil, "inner");
    writeCrate(evil, "inner", MACSWAP_RS);
    writeFileSync(join(evil, "outside.txt"), "x");
    const traversalTar = join(evil, "traversal.tar");
    createTar({ cwd: inner, file: traversalTar, sync: true, preservePaths: true }, [
      "Cargo.toml",
      "../outside.txt",
    ]);
    const traversal = await tarUpload(readFileSync(traversalTar));
    expect(traversal.status).toBe(400);
    expect(traversal.json().error).toMatch(/\.\.\/outside\.txt: path escapes the archive/);

    // symbolic link
    const linked = writeCrate(evil, "linked", MACSWAP_RS);
    symlinkSync("/etc/passwd", join(linked, "src", "passwd"));
    const symlink = await tarUpload(tarOf(evil, "linked"));
    expect(symlink.status).toBe(400);
    expect(symlink.json().error).toMatch(/linked\/src\/passwd: is a symbolic link/);

    // hard link
    const hard = writeCrate(evil, "hard", MACSWAP_RS);
    linkSync(join(hard, "src", "lib.rs"), join(hard, "src", "copy.rs"));
    const hardlink = await tarUpload(tarOf(evil, "hard"));
    expect(hardlink.status).toBe(400);
    expect(hardlink.json().error).toMatch(/is a hard link/);

    // oversized
    const big = await tarUpload(Buffer.alloc(ARCHIVE_LIMIT + 1024));
    expect(big.status).toBe(413);
    expect(big.json().error).toBe(`request body is larger than the limit of ${ARCHIVE_LIMIT} bytes`);

    // not a tar / wrong content type
    const garbage = await tarUpload(Buffer.from("this is not a tar archive at all"));
    expect(garbage.status).toBe(400);
    expect(garbage.json().error).toMatch(/^NF archive rejected/);
    const json = await op("/v1/nfs", { method: "POST", body: { crate: "macswap" } });
    expect(json.status).toBe(415);

    // a crate the analyser refuses (no Action enum), and a name mismatch
    writeCrate(evil, "broken", "#![no_std]\npub fn packet() {}\n");
    const broken = await tarUpload(tarOf(evil, "broken"));
    expect(broken.status).toBe(400);
    expect(broken.json().error).toMatch(/^NF crate rejected: .*lib\.rs:\d+/);
    const mismatch = await op("/v1/nfs?name=other", {
      method: "POST",
      headers: { "content-type": "application/x-tar" },
      body: tarOf(crates, "macswap"),
    });
    expect(mismatch.status).toBe(400);
    expect(mismatch.json().error).toMatch(/NF name mismatch/);

    expect(storedNfDirs()).toEqual(before);
    const data = DataDir.open(h.dir);
    expect(await data.repo.latestNf("linked")).toBeUndefined();
    expect(await data.repo.latestNf("broken")).toBeUndefined();
    await data.close();
    rmSync(evil, { recursive: true, force: true });
  });

  it("pushes a chain as a new version and rejects malformed TOML, arity mismatches and unpublished NFs", async () => {
    const ok = await op("/v1/chains", { method: "POST", body: { toml: MACSWAP_TOML, file: "macswap.toml" } });
    expect(ok.status, ok.body.toString()).toBe(201);
    expect(ok.json()).toMatchObject({ name: "macswap", version: 1 });

    const malformed = await op("/v1/chains", {
      method: "POST",
      body: { toml: "[chain\nname=", file: "bad.toml" },
    });
    expect(malformed.status).toBe(400);
    expect(malformed.json().error).toMatch(/bad\.toml:1:\d+/);

    const arity = await op("/v1/chains", {
      method: "POST",
      body: { toml: ACL_TOML.replace('to = ["tx", "drop"]', 'to = ["tx"]'), file: "acl.toml" },
    });
    expect(arity.status).toBe(400);
    expect(arity.json().error).toMatch(
      /acl\.toml:\d+:\d+: error: "acl" has 1 link target\(s\) \(tx\) but its Action enum/,
    );

    const unpublished = await op("/v1/chains", {
      method: "POST",
      body: { toml: MACSWAP_TOML.replaceAll("macswap", "nat"), file: "nat.toml" },
    });
    expect(unpublished.status).toBe(400);
    expect(unpublished.json().error).toMatch(
      /nat\.toml:\d+: \[functions\.nat\] runs NF "nat", which is not published/,
    );

    const empty = await op("/v1/chains", { method: "POST", body: { toml: "" } });
    expect(empty.status).toBe(400);
    expect(empty.json().error).toBe("invalid push request: toml: toml is empty");

    const chains = await op("/v1/chains");
    expect(chains.json<{ chains: Array<{ name: string }> }>().chains.map((c) => c.name)).toEqual(["macswap"]);
    const stored = ChainVersionResponse.parse((await op("/v1/chains/macswap")).json());
    expect(stored).toMatchObject({ name: "macswap", version: 1, file: "macswap.toml", toml: MACSWAP_TOML });
    const badVersion = await op("/v1/chains/macswap?version=abc");
    expect(badVersion.status).toBe(400);
    expect(badVersion.json().error).toMatch(/^invalid query: version:/);
    expect((await op("/v1/chains/macswap?version=7")).status).toBe(404);
  });

  it("assigns to named devices and label selectors, and rejects unknown chains, devices and empty requests", async () => {
    expect((await op("/v1/chains", { method: "POST", body: { toml: ACL_TOML } })).status).toBe(201);
    await op("/v1/devices", { method: "POST", body: { name: "pi-2", labels: { role: "edge" } } });
    const bySelector = await op("/v1/assignments", {
      method: "POST",
      body: { chain: "acl", selector: { role: "edge" } },
    });
    expect(bySelector.status).toBe(200);
    expect(bySelector.json().assigned).toEqual(["pi-1", "pi-2"]);
    const byName = await op("/v1/assignments", {
      method: "POST",
      body: { chain: "macswap", devices: ["pi-2"] },
    });
    expect(byName.json().assigned).toEqual(["pi-2"]);

    const cases: Array<[object, number, RegExp]> = [
      [{ chain: "nope", devices: ["pi-1"] }, 404, /chain nope does not exist/],
      [{ chain: "acl", version: 9, devices: ["pi-1"] }, 404, /chain acl version 9 does not exist/],
      [{ chain: "acl", devices: ["ghost"] }, 404, /device ghost is not enrolled/],
      [{ chain: "acl", devices: ["old-1"] }, 409, /device old-1 is revoked/],
      [{ chain: "acl" }, 400, /devices: give devices/],
    ];
    for (const [body, status, error] of cases) {
      const res = await op("/v1/assignments", { method: "POST", body });
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.json().error).toMatch(error);
    }
    const pi1 = await op("/v1/devices/pi-1");
    expect(pi1.json().assigned).toEqual({ chain: "acl", version: null });
    expect(pi1.json().assignedBy).toMatchObject({ kind: "selector", selector: { role: "edge" } });
    const pi2 = await op("/v1/devices/pi-2");
    expect(pi2.json().assigned).toEqual({ chain: "macswap", version: null });
    expect(pi2.json().assignedBy).toEqual({ kind: "explicit" });

    // A selector nobody matches yet is a rule waiting for devices, not an error.
    const waiting = await op("/v1/assignments", {
      method: "POST",
      body: { chain: "acl", selector: { role: "nobody" } },
    });
    expect(waiting.status).toBe(200);
    expect(waiting.json()).toMatchObject({ assigned: [], rule: { selector: { role: "nobody" } } });
    expect(
      (await op("/v1/assignments", { method: "DELETE", body: { selector: { role: "nobody" } } })).status,
    ).toBe(200);
  });

  it("sets and gets map entries, checking sizes against the map spec", async () => {
    const path = "/v1/chains/acl/maps/acl.allow_list/entries";
    const key = "18000000" + "0a000000"; // /24, 10.0.0.0
    const set = await op(path, { method: "PUT", body: { set: [{ key, value: "01" }] } });
    expect(set.status, set.body.toString()).toBe(200);
    expect(set.json().entries).toEqual([{ key, value: "01" }]);
    expect((await op(path)).json().entries).toEqual([{ key, value: "01" }]);

    const cases: Array<[string, object, number, RegExp]> = [
      [
        path,
        { set: [{ key: "00", value: "01" }] },
        400,
        /set\.0\.key: 1 bytes, map "acl.allow_list" has 8-byte keys/,
      ],
      [path, { set: [{ key, value: "0102" }] }, 400, /set\.0\.value: 2 bytes/],
      [path, { set: [{ key: "xyz", value: "01" }] }, 400, /set\.0\.key: expected lowercase hex/],
      [path, {}, 400, /nothing to set or delete/],
      [
        "/v1/chains/acl/maps/nope/entries",
        { set: [{ key, value: "01" }] },
        404,
        /has no map "nope" \(its maps: acl\.allow_list\)/,
      ],
      ["/v1/chains/ghost/maps/x/entries", { set: [{ key, value: "01" }] }, 404, /chain ghost does not exist/],
    ];
    for (const [p, body, status, error] of cases) {
      const res = await op(p, { method: "PUT", body });
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.json().error).toMatch(error);
    }
    expect((await op(path)).json().entries).toEqual([{ key, value: "01" }]);
    const removed = await op(path, { method: "PUT", body: { delete: [key] } });
    expect(removed.json().entries).toEqual([]);
  });

  it("serves Prometheus metrics to a token with the metrics scope", async () => {
    expect((await call(h.controller.url, h.caPem, "/metrics")).status).toBe(401);
    const res = await op("/metrics");
    expect(res.status).toBe(200);
    const text = res.body.toString();
    expect(text).toContain("galette_http_requests_total");
    expect(text).toContain("galette_devices_online 0");
    expect(text).toContain("galette_push_to_converged_seconds_bucket");
    // the process's own, for "why are device requests slow"
    expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds \d/m);
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toContain("nodejs_gc_duration_seconds");
  });
});
