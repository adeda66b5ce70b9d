import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NfInterface } from "@galette/chain";
import { openSqliteRepository, planChainForPush } from "@galette/controller";
import { planInstallation } from "@galette/installer";
import { type AssignedChain, AssignedChain as AssignedChainSchema } from "@galette/protocol";
import { afterAll, describe, expect, it } from "vitest";
import { AssignmentError, mapBinding, neededArtifacts, toInstallerInput } from "../src/assignment";

const root = join(import.meta.dirname, "../../..");
const dir = mkdtempSync(join(tmpdir(), "galette-agent-assign-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const at = (line: number) => ({ file: "lib.rs", line, column: 1 });
const iface = (actions: string[], maps: Array<[string, number, number]>): NfInterface => ({
  file: "lib.rs",
  actions: actions.map((name, i) => ({ name, location: at(i + 1) })),
  maps: maps.map(([name, keySize, valueSize], i) => ({ name, keySize, valueSize, location: at(i + 20) })),
});

/** The security chain as the controller hands it to a device (real planning, fake digests). */
async function securityAssignment(): Promise<AssignedChain> {
  const repo = openSqliteRepository(dir);
  const publish = (name: string, i: NfInterface) =>
    repo.insertNf({
      name,
      sourceDigest: "0".repeat(64),
      build: "built",
      buildMessage: null,
      buildHash: `hash-of-${name}`,
      interface: i,
      artifacts: [],
      publishedAt: "t",
    });
  publish("access-control", iface(["Allowed", "Denied"], [["allow_list", 8, 4]]));
  publish("weak-classifier", iface(["Normal", "Suspicious", "Malicious"], [["flow_state", 16, 8]]));
  publish("dpi", iface(["Clean", "Matched"], [["flow_state", 16, 8]]));
  const toml = readFileSync(join(root, "chains/security.toml"), "utf8");
  const planned = await planChainForPush(repo, toml, "chains/security.toml");
  await repo.close();
  const digest = (s: string) => s.padEnd(64, "0");
  return AssignedChainSchema.parse({
    ...planned.graph,
    nfs: planned.graph.nfs.map((nf, i) => ({
      ...nf,
      artifacts: {
        ...(nf.xdp ? { bpfObject: { digest: digest(`b${i}`), size: 1 } } : {}),
        ...(nf.userland ? { native: { digest: digest(`c${i}`), size: 1 } } : {}),
      },
    })),
    name: planned.name,
    version: 1,
    mapEntries: [],
  });
}

const security = await securityAssignment();

describe("assignment → installer input", () => {
  const chain = security;
  const uuid = (instance: string) => chain.nfs.find((n) => n.instance === instance)!.uuid;

  it("plans the security chain's installation: tail call, upcall to userland DPI, shared and owned maps", () => {
    const input = toInstallerInput(chain, (d) => `/cache/${d}`);
    expect(input.plan.entry).toEqual({ kind: "tailcall", target: "access-control" });
    // the controller's decisions arrive unchanged, only UUIDs become instance names
    expect(input.plan.nfs.map((n) => [n.name, n.actions])).toEqual([
      ["access-control", [{ kind: "tailcall", target: "weak-classifier" }, { kind: "drop" }]],
      ["weak-classifier", [{ kind: "tx" }, { kind: "upcall", target: "dpi" }, { kind: "drop" }]],
      ["dpi", [{ kind: "tx" }, { kind: "drop" }]],
    ]);
    expect(input.artifacts.get("weak-classifier")?.variants).toEqual(["Normal", "Suspicious", "Malicious"]);
    const reconf = planInstallation(input.plan, input.artifacts, { iface: "eth0" }, { bpffsRoot: "/x" });
    const byName = new Map(reconf.spec.instances.map((i) => [i.name, i]));
    const ac = byName.get("access-control")!;
    const wc = byName.get("weak-classifier")!;
    const dpi = byName.get("dpi")!;
    expect(ac.actions.map((a) => [a.kind, a.arg])).toEqual([
      ["tailcall", wc.id],
      ["drop", 0],
    ]);
    expect(wc.actions.map((a) => [a.kind, a.arg])).toEqual([
      ["tx", 0],
      ["upcall", dpi.id],
      ["drop", 0],
    ]);
    expect(dpi.actions.map((a) => a.kind)).toEqual(["tx", "drop"]);
    expect([dpi.xdp, dpi.userland]).toEqual([false, true]);
    expect(dpi.library).toBe(
      `/cache/${chain.nfs.find((n) => n.instance === "dpi")!.artifacts.native!.digest}`,
    );
    expect(ac.uuid).toBe(uuid("access-control"));
    expect(wc.maps).toEqual(dpi.maps);
    expect(wc.maps).toEqual(["shared.flow_state"]);
    expect(reconf.spec.maps.find((m) => m.key.startsWith("access-control.allow_list"))).toMatchObject({
      type: "lpm_trie",
      keySize: 8,
      valueSize: 4,
      maxEntries: 65535,
    });
  });

  it("reuses every instance when replanned against itself, and only the changed NF's ancestors otherwise", () => {
    const input = toInstallerInput(chain, (d) => `/cache/${d}`);
    const first = planInstallation(input.plan, input.artifacts, { iface: "eth0" });
    const again = planInstallation(input.plan, input.artifacts, { iface: "eth0" }, { live: first.spec });
    expect(again.created).toEqual([]);
    expect(again.reused).toHaveLength(3);
    const newDpi = structuredClone(chain);
    const dpi = newDpi.nfs.find((n) => n.instance === "dpi")!;
    const newUuid = "00000000-0000-4000-8000-000000000001";
    for (const nf of newDpi.nfs)
      for (const a of nf.actions) if ("target" in a && a.target === dpi.uuid) a.target = newUuid;
    dpi.uuid = newUuid;
    dpi.buildHash = "hash-of-dpi-v2";
    const changed = toInstallerInput(newDpi, (d) => `/cache/${d}`);
    const reconf = planInstallation(changed.plan, changed.artifacts, { iface: "eth0" }, { live: first.spec });
    // dpi is new; weak-classifier upcalls to it (its table changes); access-control tail-calls that.
    expect(reconf.created).toHaveLength(3);
    expect(reconf.maps.reused).toHaveLength(2);
  });

  it("lists the artifacts the device needs, and names an NF without one", () => {
    expect(neededArtifacts(chain, "x86_64-unknown-linux-gnu").map((n) => [n.nf.instance, n.kind])).toEqual([
      ["access-control", "bpf-object"],
      ["weak-classifier", "bpf-object"],
      ["dpi", "native-lib"],
    ]);
    const noLib = structuredClone(chain);
    delete noLib.nfs[2]!.artifacts.native;
    expect(() => neededArtifacts(noLib, "armv7-unknown-linux-gnueabihf")).toThrow(
      /NF "dpi" \(dpi\) runs in userland but the assignment has no native library for armv7-unknown-linux-gnueabihf/,
    );
  });

  it("finds the NF binding a map, and refuses actions and maps that point nowhere", () => {
    expect(mapBinding(chain, "flow_state")).toEqual({ instance: "weak-classifier", field: "flow_state" });
    expect(() => mapBinding(chain, "nope")).toThrow(/map entries for "nope", which no NF of the chain binds/);
    const badEdge = structuredClone(chain);
    badEdge.nfs[0]!.actions[0] = {
      variant: "Allowed",
      kind: "tailcall",
      target: "00000000-0000-4000-8000-00000000dead",
    };
    expect(() => toInstallerInput(badEdge, (d) => d)).toThrow(AssignmentError);
    expect(() => toInstallerInput(badEdge, (d) => d)).toThrow(
      /00000000-0000-4000-8000-00000000dead, which is no NF/,
    );
    const badMap = structuredClone(chain);
    badMap.nfs[0]!.maps[0]!.map = "missing";
    expect(() => toInstallerInput(badMap, (d) => d)).toThrow(
      /binds map field "allow_list" to unknown map "missing"/,
    );
    const badEntry = structuredClone(chain);
    badEntry.entry.target = "00000000-0000-4000-8000-00000000beef";
    expect(() => toInstallerInput(badEntry, (d) => d)).toThrow(
      /the entry is 00000000-0000-4000-8000-00000000beef/,
    );
    // a tail call from XDP into an NF the plan keeps out of XDP is refused before anything is touched
    const intoUserland = structuredClone(chain);
    intoUserland.nfs[1]!.actions[1] = { variant: "Suspicious", kind: "tailcall", target: uuid("dpi") };
    const input = toInstallerInput(intoUserland, (d) => d);
    expect(() => planInstallation(input.plan, input.artifacts, { iface: "eth0" })).toThrow(
      /tail call to "dpi", which the plan does not place in XDP/,
    );
  });
});
