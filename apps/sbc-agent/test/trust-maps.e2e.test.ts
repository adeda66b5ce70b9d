/**
 * A validly signed chain version that does not give an NF the maps its signed release was
 * built for: a real controller serving it (its database edited, as a compromised
 * controller could, with a signature of the pinned key over the edited document, as an
 * operator signing a document not made by `galette chain push` would), a real agent
 * refusing it before loading anything, the running chain forwarding meanwhile.
 */
import { createRequire } from "node:module";
import path from "node:path";
import {
  type ChainGraph,
  type ChainVersionDocument,
  SIGNATURE_DOMAINS,
  signDocument,
} from "@galette/protocol";
import { describeKernel } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bounce, Fleet, repoRoot, waitFor } from "./fleet";

const DEV = "edge-trust-maps";

describeKernel("device trust: a signed chain must bind the maps its NF releases were built for", () => {
  const fleet = new Fleet();
  let version = 0;

  beforeAll(async () => {
    await fleet.start({ devices: [{ name: DEV, websocket: true, pollIntervalSeconds: 2 }] });
    expect((await fleet.publish("macswap")).build).toBe("built");
    version = (await fleet.push("chains/macswap.toml")).version;
    await fleet.operator.assignChain({ chain: "macswap", devices: [DEV] });
    await fleet.converged(DEV, "macswap", version, 120_000);
  }, 400_000);
  afterAll(() => fleet.cleanup());

  const veth = () => fleet.agent(DEV).veth;
  const forwards = async (tag: string) =>
    expect(await bounce(veth(), tag, 10, veth().ipA, 10)).toHaveLength(10);

  /**
   * The controller serves assignments from memory (rebuilt after its own changes, else after
   * a 10 s TTL): after an edit behind its back, assigning the same chain again makes it
   * rebuild what it serves and re-pokes the device, as a compromised controller would.
   */
  const serveDatabase = () => fleet.operator.assignChain({ chain: "macswap", devices: [DEV] });

  /**
   * Serves the running version with its signed document changed by `edit`, signed again by
   * the pinned key, and its graph made to agree (the same bindings and map specs);
   * waits for the device to refuse it with `why`; then restores the database.
   */
  async function refusedWhenSigned(edit: (doc: ChainVersionDocument) => void, why: RegExp): Promise<void> {
    const Database = createRequire(path.join(repoRoot, "apps/controller/package.json"))("better-sqlite3");
    const db = new Database(path.join(fleet.controller.dataDir, "galette.db"));
    const where = "WHERE name = 'macswap' AND version = ?";
    const graphRow = db.prepare(`SELECT graph FROM chain_versions ${where}`).get(version) as {
      graph: string;
    };
    const releaseRow = db
      .prepare(`SELECT document, signatures FROM chain_releases ${where}`)
      .get(version) as {
      document: string;
      signatures: string;
    };
    const doc = JSON.parse(releaseRow.document) as ChainVersionDocument;
    const graph = JSON.parse(graphRow.graph) as ChainGraph;
    edit(doc);
    for (const nf of graph.nfs) nf.maps = doc.nfs.find((n) => n.uuid === nf.uuid)!.maps;
    graph.maps = doc.maps;
    const signatures = [signDocument(SIGNATURE_DOMAINS.chainVersion, doc, fleet.releaseKey.pem)];
    const errorsBefore = (await fleet.device(DEV)).errors.length;
    const logMark = fleet.agent(DEV).logs.length;
    db.prepare(`UPDATE chain_versions SET graph = ? ${where}`).run(JSON.stringify(graph), version);
    db.prepare(`UPDATE chain_releases SET document = ?, signatures = ? ${where}`).run(
      JSON.stringify(doc),
      JSON.stringify(signatures),
      version,
    );
    try {
      await serveDatabase();
      const d = await waitFor(`${DEV} to refuse the edited v${version}`, 30_000, async () => {
        const s = await fleet.device(DEV);
        return s.errors.length > errorsBefore || s.errors.some((e) => why.test(e.message)) ? s : undefined;
      });
      expect(d.errors.map((e) => e.message).join("\n")).toMatch(why);
      // …and the operator sees why
      expect(fleet.cli(["device", "list"])).toMatch(why);
      expect(d.state).toBe("error");
      expect(d.installed).toMatchObject({ chain: "macswap", version });
      // nothing of it was loaded: no download, and the running chain forwards
      expect(fleet.agent(DEV).logged("artifact downloaded", logMark)).toHaveLength(0);
      await forwards(`refused-${d.errors.length}`);
    } finally {
      db.prepare(`UPDATE chain_versions SET graph = ? ${where}`).run(graphRow.graph, version);
      db.prepare(`UPDATE chain_releases SET document = ?, signatures = ? ${where}`).run(
        releaseRow.document,
        releaseRow.signatures,
        version,
      );
      db.close();
    }
    await serveDatabase();
    // offered what runs again: converged, no error
    const back = await fleet.converged(DEV, "macswap", version, 30_000);
    expect(back.errors).toEqual([]);
  }

  it("the map omitted from the chain (binding and spec)", async () => {
    await forwards("before");
    await refusedWhenSigned((doc) => {
      doc.nfs[0]!.maps = [];
      doc.maps = [];
    }, /v\d+: NF "macswap" \(macswap\): the signed chain binds map fields \[\], its signed release declares \[counters\]; not bound: counters/);
  }, 120_000);

  it("the map renamed", async () => {
    await refusedWhenSigned((doc) => {
      doc.nfs[0]!.maps[0]!.field = "counter";
    }, /not bound: counters; not in the release: counter/);
  }, 120_000);

  it("the map's value size or type changed", async () => {
    await refusedWhenSigned((doc) => {
      doc.maps[0]!.valueSize = 64;
    }, /map "macswap.counters" has 64-byte values in the signed chain, the signed release was built for 8-byte values/);
    await refusedWhenSigned((doc) => {
      doc.maps[0]!.type = "hash_map";
    }, /map "macswap.counters" is hash_map in the signed chain, array in the signed release/);
  }, 240_000);
});
