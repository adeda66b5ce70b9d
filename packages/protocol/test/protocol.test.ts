import { describe, expect, it } from "vitest";
import {
  AgentConfig,
  AssignChainRequest,
  chainGraphFromStored,
  DeviceAssignment,
  DeviceNotification,
  DeviceStatusReport,
  describeZodError,
  PROTOCOL_VERSION,
  SetMapEntriesRequest,
  tripleForMachine,
} from "../src/index";

const uuid = "6c0a6f1e-3b1d-4f5e-9a57-2f4d1c8e0b7a";

describe("protocol schemas", () => {
  it("accepts an assignment graph and rejects an action with an unknown kind of target", () => {
    const assignment = {
      protocolVersion: PROTOCOL_VERSION,
      device: "pi-1",
      triple: "aarch64-unknown-linux-gnu",
      chain: {
        name: "security",
        version: 3,
        entry: { kind: "tailcall", target: uuid },
        nfs: [
          {
            uuid,
            instance: "macswap",
            nf: "macswap",
            buildHash: "",
            xdp: true,
            userland: false,
            actions: [{ variant: "Tx", kind: "tx" }],
            maps: [],
            artifacts: { bpfObject: { digest: "a".repeat(64), size: 10 } },
          },
        ],
        maps: [],
        mapEntries: [],
      },
    };
    expect(DeviceAssignment.parse(assignment)).toEqual(assignment);
    for (const action of [
      { variant: "Tx", kind: "tailcall", target: "elsewhere" },
      { variant: "Tx", kind: "tailcall" },
      { variant: "Tx", kind: "tx", target: uuid },
      { variant: "Tx", kind: "reflect", target: uuid },
      { variant: "Tx", kind: "redirect" },
    ]) {
      const bad = structuredClone(assignment) as unknown as { chain: { nfs: Array<{ actions: unknown[] }> } };
      bad.chain.nfs[0]!.actions[0] = action;
      const result = DeviceAssignment.safeParse(bad);
      expect(result.success, JSON.stringify(action)).toBe(false);
      expect(describeZodError(result.error!).join("\n")).toContain("chain.nfs.0.actions.0");
    }
    const noEntry = structuredClone(assignment) as { chain: { entry?: unknown } };
    delete noEntry.chain.entry;
    expect(DeviceAssignment.safeParse(noEntry).success).toBe(false);
  });

  it("requires devices or a selector in an assign request, naming the key", () => {
    const result = AssignChainRequest.safeParse({ chain: "security" });
    expect(result.success).toBe(false);
    expect(describeZodError(result.error!)[0]).toMatch(/^devices: give devices/);
    expect(AssignChainRequest.parse({ chain: "security", selector: { role: "edge" } }).selector).toEqual({
      role: "edge",
    });
  });

  it("rejects odd-length or uppercase hex in map entries", () => {
    expect(SetMapEntriesRequest.safeParse({ set: [{ key: "abc", value: "00" }] }).success).toBe(false);
    expect(SetMapEntriesRequest.safeParse({ set: [{ key: "AB", value: "00" }] }).success).toBe(false);
    expect(SetMapEntriesRequest.safeParse({}).success).toBe(false);
    expect(SetMapEntriesRequest.parse({ delete: ["0a000001"] }).set).toEqual([]);
  });

  it("parses status reports and notifications", () => {
    expect(
      DeviceStatusReport.parse({
        protocolVersion: 1,
        agentVersion: "0.1.0",
        arch: "armv7l",
        kernelVersion: "6.1.0-rpi",
        installed: null,
        state: "idle",
        errors: [],
        counters: [{ uuid, counters: { packets: 5 } }],
      }).counters[0]!.counters.packets,
    ).toBe(5);
    expect(DeviceNotification.parse({ type: "assignment-changed", etag: '"x"' }).type).toBe(
      "assignment-changed",
    );
    expect(DeviceNotification.safeParse({ type: "reboot" }).success).toBe(false);
  });

  it("maps uname -m to build triples", () => {
    expect(tripleForMachine("armv7l")).toBe("armv7-unknown-linux-gnueabihf");
    expect(tripleForMachine("aarch64")).toBe("aarch64-unknown-linux-gnu");
    expect(tripleForMachine("mips")).toBeUndefined();
  });

  it("fills agent config defaults and refuses plain http", () => {
    const config = AgentConfig.parse({ controllerUrl: "https://127.0.0.1:8443", device: "pi-1" });
    expect(config.certFile).toBe("device.crt");
    expect(config.pollIntervalSeconds).toBe(30);
    expect(AgentConfig.safeParse({ controllerUrl: "http://127.0.0.1:8443", device: "pi-1" }).success).toBe(
      false,
    );
  });
});

describe("chain graphs read back from storage", () => {
  const a = "6c0a6f1e-3b1d-4f5e-9a57-2f4d1c8e0b7a";
  const b = "7c0a6f1e-3b1d-4f5e-9a57-2f4d1c8e0b7a";
  const nf = (uuid: string, instance: string, xdp: boolean, userland: boolean) => ({
    uuid,
    instance,
    nf: instance,
    buildHash: "h",
    xdp,
    userland,
    maps: [],
  });

  it("converts a protocol-1 graph (edges) into action tables with the same decisions", () => {
    const v1 = {
      nfs: [
        { ...nf(a, "wc", true, false), actionCount: 2, actions: ["Normal", "Suspicious"] },
        { ...nf(b, "dpi", false, true), actionCount: 1 },
      ],
      edges: [
        { from: "rx", to: a, kind: "entry", actionIndex: null, fromPlacement: "xdp", toPlacement: "xdp" },
        { from: a, to: "tx", kind: "exit", actionIndex: 0, fromPlacement: "xdp" },
        { from: a, to: b, kind: "upcall", actionIndex: 1, fromPlacement: "xdp", toPlacement: "userland" },
        { from: b, to: "drop", kind: "exit", actionIndex: 0, fromPlacement: "userland" },
      ],
      maps: [],
    };
    expect(chainGraphFromStored(v1)).toEqual({
      entry: { kind: "tailcall", target: a },
      nfs: [
        {
          ...nf(a, "wc", true, false),
          actions: [
            { variant: "Normal", kind: "tx" },
            { variant: "Suspicious", kind: "upcall", target: b },
          ],
        },
        { ...nf(b, "dpi", false, true), actions: [{ variant: "action0", kind: "drop" }] },
      ],
      maps: [],
    });
    const current = chainGraphFromStored(v1);
    expect(chainGraphFromStored(current)).toEqual(current);
  });

  it("names what is wrong with a graph that fits neither version", () => {
    expect(() => chainGraphFromStored({ nfs: [], maps: [] })).toThrow(/not a valid ChainGraph: entry/);
  });
});
