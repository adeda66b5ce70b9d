/**
 * Devices run only what an operator signed: a real controller, a real galette-agent on a
 * veth pair, real `galette` CLI runs for the operator's side. Every refusal must leave the
 * running chain forwarding and say why in `galette device list`.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { initReleaseKey, loadReleaseKey } from "@galette/controller";
import { Dataplane } from "@galette/installer";
import { cacheDir } from "@galette/nf-build";
import { type DeviceSummary, SIGNATURE_DOMAINS, signDocument } from "@galette/protocol";
import { describeKernel } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bounce, Fleet, repoRoot, waitFor } from "./fleet";

const DEV = "edge-trust";
const NOT_RELEASED = /build [0-9a-f]{12} is not covered by a release signed by a pinned key/;

describeKernel("device trust: only chains and NF builds signed by a pinned release key are loaded", () => {
  const fleet = new Fleet();
  const scratch = mkdtempSync(path.join(tmpdir(), "galette-trust-"));
  let key = "";
  let pub = "";
  /** release digest of macswap as first published (build A) and of the changed source (build B) */
  let releaseA = "";

  beforeAll(async () => {
    await fleet.start({ devices: [{ name: DEV, websocket: true, pollIntervalSeconds: 2 }] });
    key = fleet.releaseKeyFile;
    pub = path.join(path.dirname(key), "release.pub");
  });
  afterAll(async () => {
    await fleet.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  const veth = () => fleet.agent(DEV).veth;
  const forwards = async (tag: string) =>
    expect(await bounce(veth(), tag, 10, veth().ipA, 10)).toHaveLength(10);
  /**
   * The controller serves assignments from memory (rebuilt after its own changes, else after
   * a 10 s TTL): after an edit behind its back, assigning the same chain again makes it
   * rebuild what it serves and re-pokes the device, as a compromised controller would.
   */
  const serveDatabase = () => fleet.operator.assignChain({ chain: "macswap", devices: [DEV] });
  const listed = (): DeviceSummary => {
    const { devices } = JSON.parse(fleet.cli(["device", "list", "--json"])) as { devices: DeviceSummary[] };
    return devices.find((d) => d.name === DEV)!;
  };
  /** Waits for a refusal of `version` matching `why`, reported to the controller; the old version stays installed. */
  const refused = async (version: number, why: RegExp, installed: number) => {
    const d = await waitFor(`${DEV} to refuse macswap v${version}`, 20_000, async () => {
      const s = await fleet.device(DEV);
      return s.errors.some((e) => e.message.includes(`v${version}`) && why.test(e.message)) ? s : undefined;
    });
    expect(d.state).toBe("error");
    expect(d.installed).toMatchObject({ chain: "macswap", version: installed });
    const shown = listed();
    expect(shown.errors.map((e) => e.message).join("\n")).toMatch(why);
    // the human table names the reason too
    expect(fleet.cli(["device", "list"])).toMatch(why);
    return d;
  };

  it("acceptance: publish, release (rebuilt locally), push --key, assign → the agent converges", async () => {
    fleet.cli(["nf", "publish", "nf-examples/macswap"]);
    // A cold artifact cache: the operator's machine compiles for itself (sysroots reused: they are toolchain, not NF).
    const released = fleet.cli(["nf", "release", "macswap", "--key", key], {
      GALETTE_CACHE_DIR: path.join(scratch, "operator-cache"),
      GALETTE_SYSROOT_DIR: path.join(cacheDir(), "sysroots"),
    });
    expect(released).toMatch(/bpf-object\s+[0-9a-f]{64} \d+ B: rebuilt here: same digest/);
    releaseA = /released macswap ([0-9a-f]{64})/.exec(released)![1]!;
    const pushed = fleet.cli(["chain", "push", "chains/macswap.toml", "--key", key]);
    expect(pushed).toMatch(/chain version to sign: macswap version 1/);
    expect(pushed).toMatch(/pushed macswap version 1/);
    fleet.cli(["chain", "assign", "macswap", "--devices", DEV]);
    const d = await fleet.converged(DEV, "macswap", 1);
    expect(d.errors).toEqual([]);
    await forwards("signed-v1");
  });

  it("republished source pushed again without a release: refused, reason in device list --json, v1 keeps forwarding", async () => {
    const crate = path.join(scratch, "src", "macswap");
    cpSync(path.join(repoRoot, "nf-examples/macswap"), crate, {
      recursive: true,
      filter: (p) => !p.split(path.sep).includes("target"),
    });
    writeFileSync(
      path.join(crate, "src/lib.rs"),
      `${readFileSync(path.join(crate, "src/lib.rs"), "utf8")}\n// republished: a new build\n`,
    );
    fleet.cli(["nf", "publish", crate]);
    // The pushed v1 still runs build A: publishing changes no pushed version.
    await forwards("still-v1-after-publish");
    expect((await fleet.device(DEV)).installed).toMatchObject({ version: 1 });
    const pushed = fleet.cli(["chain", "push", "chains/macswap.toml", "--key", key]);
    expect(pushed).toMatch(/pushed macswap version 2/);
    expect(pushed).toMatch(/NOT released with this key/);
    await refused(2, NOT_RELEASED, 1);
    const json = listed();
    expect(json.state).toBe("error");
    expect(json.installed).toMatchObject({ chain: "macswap", version: 1 });
    expect(json.errors[0]!.message).toMatch(/^refused chain "macswap" v2: .*NF "macswap" \(macswap\): build/);
    await forwards("v1-while-v2-refused");
  });

  it("a build signed by a key the device does not pin is refused the same way", async () => {
    const unknown = initReleaseKey(path.join(scratch, "unknown"));
    const agent = fleet.agent(DEV);
    const mark = agent.logs.length;
    await fleet.release("macswap", unknown.keyFile);
    // The new signature changes the assignment: the agent looks again and refuses again.
    await waitFor("the agent to re-check v2", 20_000, () =>
      agent.logged("assignment refused; nothing loaded, the running chain stays", mark).length > 0
        ? true
        : undefined,
    );
    await refused(2, NOT_RELEASED, 1);
    await forwards("v1-unknown-key");
  });

  it("an unsigned chain version is refused", async () => {
    const pushed = await fleet.push("chains/macswap.toml", undefined, null);
    expect(pushed.version).toBe(3);
    await refused(3, /v3 is not signed/, 1);
    await forwards("v1-unsigned");
  });

  it("a version re-pointed to another NF build in the database is refused", async () => {
    // Release build B with the pinned key and push v4 properly: it goes in.
    await fleet.release("macswap");
    expect((await fleet.push("chains/macswap.toml")).version).toBe(4);
    await fleet.converged(DEV, "macswap", 4);
    await forwards("v4");
    // Behind the API's back: v4's macswap instance now runs build A (graph and recorded release).
    const Database = createRequire(path.join(repoRoot, "apps/controller/package.json"))("better-sqlite3");
    const db = new Database(path.join(fleet.controller.dataDir, "galette.db"));
    const buildA = (await fleet.operator.getNfRelease("macswap", releaseA)).manifest.buildHash;
    const row = db
      .prepare("SELECT graph FROM chain_versions WHERE name = 'macswap' AND version = 4")
      .get() as {
      graph: string;
    };
    const rel = db
      .prepare("SELECT releases FROM chain_releases WHERE name = 'macswap' AND version = 4")
      .get() as {
      releases: string;
    };
    const graph = JSON.parse(row.graph) as { nfs: Array<{ buildHash: string; uuid: string }> };
    const buildB = graph.nfs[0]!.buildHash;
    expect(buildA).not.toBe(buildB);
    const releases = Object.fromEntries(
      Object.keys(JSON.parse(rel.releases)).map((uuid) => [uuid, releaseA]),
    );
    graph.nfs[0]!.buildHash = buildA;
    db.prepare("UPDATE chain_versions SET graph = ? WHERE name = 'macswap' AND version = 4").run(
      JSON.stringify(graph),
    );
    db.prepare("UPDATE chain_releases SET releases = ? WHERE name = 'macswap' AND version = 4").run(
      JSON.stringify(releases),
    );
    try {
      // The signed v4 names build B; the controller now serves build A's artifacts and release.
      await serveDatabase();
      await refused(
        4,
        /v4: NF "macswap" \(macswap\): (build [0-9a-f]{12} is not covered by a release signed by a pinned key|runs build)/,
        4,
      );
      await forwards("v4-repointed");
    } finally {
      db.prepare("UPDATE chain_versions SET graph = ? WHERE name = 'macswap' AND version = 4").run(row.graph);
      db.prepare("UPDATE chain_releases SET releases = ? WHERE name = 'macswap' AND version = 4").run(
        rel.releases,
      );
      db.close();
    }
    await serveDatabase();
    // Offered what runs again: the device is back to converged with no error.
    const d = await fleet.converged(DEV, "macswap", 4, 20_000);
    expect(d.errors).toEqual([]);
  });

  it("a replayed older signed version is refused; the version that ran immediately before is accepted", async () => {
    // v2 is signed and its build is released now, but the device already ran v4.
    fleet.cli(["chain", "assign", "macswap", "--devices", DEV, "--version", "2"]);
    await refused(2, /v2 is older than v4, which this device already ran/, 4);
    await forwards("v4-replay-refused");
    // v1 ran right before v4: a failed rollout's rollback needs no new signature. The
    // device keeps its eBPF object (build A) cached for a rollback; here it is gone from
    // the device's cache, so it is downloaded, and it is first swapped on the
    // controller's disk: the signed manifest's digest refuses it.
    const bpfA = (await fleet.operator.getNfRelease("macswap", releaseA)).manifest.artifacts.find(
      (a) => a.kind === "bpf-object",
    )!.digest;
    const agentCache = path.resolve(fleet.agent(DEV).bundleDir, fleet.agent(DEV).config.dataDir, "artifacts");
    rmSync(path.join(agentCache, bpfA), { force: true });
    const stored = path.join(fleet.controller.dataDir, "artifacts", "sha256", bpfA.slice(0, 2), bpfA);
    const good = readFileSync(stored);
    const swapped = Buffer.from(good);
    swapped[swapped.length >> 1]! ^= 0xff;
    writeFileSync(stored, swapped);
    // The controller serves small artifacts from memory once read: a restart makes it read
    // (and serve) the swapped file.
    await fleet.controller.stop();
    await fleet.controller.start();
    try {
      fleet.cli(["chain", "assign", "macswap", "--devices", DEV, "--version", "1"]);
      await refused(
        1,
        new RegExp(`artifact ${bpfA} as downloaded .* has sha256 [0-9a-f]{64}: corrupted or tampered with`),
        4,
      );
      await forwards("v4-artifact-swapped");
    } finally {
      writeFileSync(stored, good);
    }
    // the install is retried: the genuine object goes in
    await fleet.converged(DEV, "macswap", 1, 30_000);
    fleet.cli(["chain", "assign", "macswap", "--devices", DEV]);
    await fleet.converged(DEV, "macswap", 4);
    await forwards("v4-again");
  });

  it("the offline cache is checked again: a tampered cached assignment is refused, nothing of it is loaded", async () => {
    const agent = fleet.agent(DEV);
    const cacheFile = path.resolve(agent.bundleDir, agent.config.dataDir, "assignment.json");
    await fleet.controller.kill();
    await agent.signal("SIGKILL");
    const cached = JSON.parse(readFileSync(cacheFile, "utf8")) as {
      assignment: { trust: { chain: { signatures: unknown[] } } };
    };
    cached.assignment.trust.chain.signatures = [];
    writeFileSync(cacheFile, JSON.stringify(cached));
    try {
      // Restart with the chain still pinned: it is adopted, the tampered cache is not trusted.
      let mark = agent.logs.length;
      agent.start();
      await waitFor("the agent to refuse its cache", 20_000, () =>
        agent.logs
          .slice(mark)
          .some(
            (l) =>
              l.msg === "assignment refused; nothing loaded, the running chain stays" && l.from === "cache",
          )
          ? true
          : undefined,
      );
      expect(JSON.stringify(agent.logs.slice(mark))).toMatch(/v4 is not signed by a pinned release key/);
      await forwards("adopted-despite-bad-cache");
      // After a "reboot" (pins gone), the same cache installs nothing.
      await agent.signal("SIGKILL");
      Dataplane.remove(
        { iface: veth().ifB, netns: veth().nsB },
        { stateDir: path.resolve(agent.bundleDir, agent.config.stateDir) },
      );
      mark = agent.logs.length;
      agent.start();
      await waitFor("the agent to refuse reinstalling from its cache", 20_000, () =>
        agent.logs
          .slice(mark)
          .some(
            (l) =>
              l.msg === "assignment refused; nothing loaded, the running chain stays" && l.from === "cache",
          )
          ? true
          : undefined,
      );
      expect(agent.logged("assignment applied (installed)", mark)).toEqual([]);
      expect(await bounce(veth(), "nothing-loaded", 5, veth().ipA)).toHaveLength(0);
    } finally {
      await fleet.controller.start();
    }
    // The controller's (signed) assignment goes in again.
    await fleet.converged(DEV, "macswap", 4, 30_000);
    // a fresh install (the pins were gone): give the new attachment a moment
    await waitFor("v4 to forward again", 10_000, async () =>
      (await bounce(veth(), "back-from-controller", 10, veth().ipA, 10)).length === 10 ? true : undefined,
    );
    expect(JSON.parse(readFileSync(cacheFile, "utf8")).assignment.trust.chain.signatures).toHaveLength(1);
  });

  it("key rotation end to end: add key 2, re-sign, remove key 1, no re-enrolment", async () => {
    const k2 = initReleaseKey(path.join(scratch, "k2"));
    fleet.cli(["release-key", "set-trusted", pub, k2.pubFile, "--key", key]);
    await fleet.release("macswap", k2.keyFile);
    expect((await fleet.push("chains/macswap.toml", undefined, k2.keyFile)).version).toBe(5);
    await fleet.converged(DEV, "macswap", 5);
    expect(fleet.agent(DEV).logged("adopted a new release key set")).not.toHaveLength(0);
    // Drop key 1: only key 2 signs from now on.
    fleet.cli(["release-key", "set-trusted", k2.pubFile, "--key", k2.keyFile]);
    expect((await fleet.push("chains/macswap.toml")).version).toBe(6);
    await refused(6, /v6 is not signed by a pinned release key/, 5);
    await forwards("v5-after-key1-dropped");
    // A key set signed by a key outside the set is not even stored.
    const stranger = initReleaseKey(path.join(scratch, "stranger"));
    const forged = { seq: 9, keys: [loadReleaseKey(stranger.keyFile).publicKey] };
    await expect(
      fleet.operator.putReleaseKeySet({
        document: forged,
        signatures: [signDocument(SIGNATURE_DOMAINS.keySet, forged, loadReleaseKey(stranger.keyFile).pem)],
      }),
    ).rejects.toThrow(/is not signed by a key of key set #2/);
    expect((await fleet.push("chains/macswap.toml", undefined, k2.keyFile)).version).toBe(7);
    await fleet.converged(DEV, "macswap", 7);
    await forwards("v7-key2");
  });
});
