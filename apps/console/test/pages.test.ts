/// <reference types="node" />
/**
 * The console's own logic outside a browser: the page signer against the protocol's
 * verifier (the same bytes a device checks), the graph layout and the hash routes.
 */
import { generateKeyPairSync } from "node:crypto";
import {
  type ChainGraph,
  encodeReleasePublicKey,
  SIGNATURE_DOMAINS,
  signDocument,
  verifiedBy,
} from "@galette/protocol";
import { describe, expect, it } from "vitest";
import { layoutChain } from "../src/graph";
import { gateTermText, phaseStatus } from "../src/rollouts";
import { parseRoute } from "../src/router";
import { importReleaseKey, signMapEntries } from "../src/sign";

describe("map entries signed in the page", () => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const pem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  const spki = encodeReleasePublicKey(publicKey);

  it("signs what a device verifies: same key id, same bytes as the CLI's signer", async () => {
    const key = await importReleaseKey(pem);
    expect(key.publicKey).toBe(spki);
    const signed = await signMapEntries(
      key,
      "security",
      "access-control.allow_list",
      [{ key: "20000000c0000201", value: "01000000" }],
      3,
      [{ key: "18000000c0a80000", value: "02000000" }],
      ["20000000c0000201"],
    );
    expect(signed.document).toEqual({
      chain: "security",
      map: "access-control.allow_list",
      seq: 4,
      entries: [{ key: "18000000c0a80000", value: "02000000" }],
    });
    expect(verifiedBy(SIGNATURE_DOMAINS.mapEntries, signed.document, [signed.signature], [spki])).toBe(
      signed.signature.keyId,
    );
    // Ed25519 is deterministic: the CLI's signer gives the very same signature.
    expect(signDocument(SIGNATURE_DOMAINS.mapEntries, signed.document, pem)).toEqual(signed.signature);
    // another document, or another domain, does not verify
    const other = { ...signed.document, seq: 5 };
    expect(verifiedBy(SIGNATURE_DOMAINS.mapEntries, other, [signed.signature], [spki])).toBeUndefined();
    expect(
      verifiedBy(SIGNATURE_DOMAINS.chainVersion, signed.document, [signed.signature], [spki]),
    ).toBeUndefined();
  });

  it("refuses a file that is not an Ed25519 private key, saying what it expected", async () => {
    await expect(importReleaseKey(spki)).rejects.toThrow(/BEGIN PRIVATE KEY/);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({
      format: "pem",
      type: "pkcs8",
    });
    await expect(importReleaseKey(rsa.toString())).rejects.toThrow(/not an Ed25519 release key/);
  });
});

describe("chain graph layout", () => {
  const uuid = (n: number) => `00000000-0000-4000-8000-00000000000${n}`;
  const graph: ChainGraph = {
    entry: { kind: "tailcall", target: uuid(1) },
    nfs: [
      {
        uuid: uuid(1),
        instance: "access-control",
        nf: "access-control",
        buildHash: "",
        xdp: true,
        userland: false,
        actions: [
          { variant: "Allowed", kind: "tailcall", target: uuid(2) },
          { variant: "Denied", kind: "drop" },
        ],
        maps: [],
      },
      {
        uuid: uuid(2),
        instance: "dpi",
        nf: "dpi",
        buildHash: "",
        xdp: false,
        userland: true,
        actions: [
          { variant: "Clean", kind: "tx" },
          { variant: "Matched", kind: "drop" },
        ],
        maps: [],
      },
    ],
    maps: [],
  };

  it("has rx, each NF with its placement, each exit once, and an edge per action", () => {
    const layout = layoutChain(graph);
    expect(layout.nodes.map((n) => [n.label, n.kind, n.placement]).sort()).toEqual(
      [
        ["rx", "entry", undefined],
        ["access-control", "nf", "xdp"],
        ["dpi", "nf", "userland"],
        ["drop", "exit", undefined],
        ["tx", "exit", undefined],
      ].sort(),
    );
    expect(layout.edges.map((e) => [e.label, e.kind])).toEqual([
      ["", "tailcall"],
      ["Allowed", "tailcall"],
      ["Denied", "exit"],
      ["Clean", "exit"],
      ["Matched", "exit"],
    ]);
    for (const n of layout.nodes) {
      expect(n.x).toBeGreaterThan(0);
      expect(n.x + n.width / 2).toBeLessThanOrEqual(layout.width);
    }
    for (const e of layout.edges) expect(e.points.length).toBeGreaterThanOrEqual(2);
    // left to right by default: rx before access-control before dpi
    const x = (label: string) => layout.nodes.find((n) => n.label === label)!.x;
    expect(x("rx")).toBeLessThan(x("access-control"));
    expect(x("access-control")).toBeLessThan(x("dpi"));
  });

  it("draws both entries of a chain per direction: rx.a → entry, rx.b → entry.b", () => {
    const layout = layoutChain({
      ...graph,
      entry: { ...graph.entry, b: { kind: "upcall", target: uuid(2) } },
    });
    const label = (id: string) => layout.nodes.find((n) => n.id === id)?.label;
    expect(layout.nodes.filter((n) => n.kind === "entry").map((n) => n.label)).toEqual(["rx.a", "rx.b"]);
    expect(
      layout.edges.filter((e) => e.id.startsWith("entry")).map((e) => [label(e.from), label(e.to), e.kind]),
    ).toEqual([
      ["rx.a", "access-control", "tailcall"],
      ["rx.b", "dpi", "upcall"],
    ]);
    // one chain for both ports keeps its single rx
    expect(
      layoutChain(graph)
        .nodes.filter((n) => n.kind === "entry")
        .map((n) => n.label),
    ).toEqual(["rx"]);
  });
});

describe("hash routes", () => {
  it("names each page and takes names as they were encoded", () => {
    expect(parseRoute("")).toEqual({ page: "fleet" });
    expect(parseRoute("#/devices/edge%2Fa")).toEqual({ page: "device", name: "edge/a" });
    expect(parseRoute("#/chains/security?version=3")).toEqual({
      page: "chain",
      name: "security",
      version: 3,
    });
    expect(parseRoute("#/chains/security?version=-1")).toEqual({ page: "chain", name: "security" });
    expect(parseRoute("#/rollouts")).toEqual({ page: "rollouts" });
    expect(parseRoute("#/nope")).toEqual({ page: "fleet" });
    expect(parseRoute("#/devices/%E0%A4%A")).toEqual({ page: "fleet" });
  });
});

describe("rollouts page", () => {
  it("places each phase relative to the rollout's current phase and state", () => {
    expect(phaseStatus({ state: "running", phase: 1 }, 0)).toBe("done");
    expect(phaseStatus({ state: "running", phase: 1 }, 1)).toBe("in progress");
    expect(phaseStatus({ state: "running", phase: 1 }, 2)).toBe("pending");
    expect(phaseStatus({ state: "paused", phase: 0 }, 0)).toBe("paused");
    expect(phaseStatus({ state: "aborted", phase: 0 }, 0)).toBe("stopped");
    expect(phaseStatus({ state: "aborted", phase: 0 }, 1)).toBe("pending");
    expect(phaseStatus({ state: "completed", phase: 1 }, 1)).toBe("done");
  });

  it("writes a failed gate term with the values it read", () => {
    expect(gateTermText({ term: "aborts == 0", values: { aborts: 812 } })).toBe("aborts == 0 (aborts=812)");
    expect(gateTermText({ term: "installed", values: { installed: false } })).toBe(
      "installed (installed=false)",
    );
    expect(gateTermText({ term: "heartbeat", values: {} })).toBe("heartbeat");
  });
});
