import {
  AssignChainResponse,
  type DeviceAssignment,
  DeviceSummary,
  ListSelectorRulesResponse,
  RemoveAssignmentResponse,
} from "@galette/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDir } from "../src/control";
import { deviceSocket, fakeBuilder, type Harness, startHarness } from "./helpers";

describe("selector assignments are standing rules", () => {
  let h: Harness;
  const op = (path: string, options: Parameters<Harness["call"]>[1] = {}) =>
    h.call(path, { token: h.token, ...options });

  const served = async (name: string) => {
    const res = await h.call("/v1/device/assignment", { client: h.asDevice(name) });
    expect(res.status, res.body.toString()).toBe(200);
    return { chain: res.json<DeviceAssignment>().chain?.name ?? null, etag: res.headers.etag as string };
  };
  const summary = async (name: string) => DeviceSummary.parse((await op(`/v1/devices/${name}`)).json());
  const assign = async (body: object) => {
    const res = await op("/v1/assignments", { method: "POST", body });
    expect(res.status, res.body.toString()).toBe(200);
    return AssignChainResponse.parse(res.json());
  };
  const unassign = (body: object) => op("/v1/assignments", { method: "DELETE", body });

  beforeAll(async () => {
    h = await startHarness({ nfBuilder: fakeBuilder });
    await h.publishExamples();
    await h.enrol("early", { site: "lab" });
    await h.enrol("other", { site: "field" });
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  it("gives the chain to a device matching a rule, also one enrolled after the assign, and notifies it", async () => {
    const { ws, messages, received: waitFor } = deviceSocket(h, h.asDevice("early"));
    await waitFor(1);
    const before = await served("early");
    expect(before.chain).toBeNull();

    const assigned = await assign({ chain: "macswap", selector: { site: "lab" } });
    expect(assigned.assigned).toEqual(["early"]);
    expect(assigned.rule).toMatchObject({ chain: "macswap", version: null, selector: { site: "lab" } });

    const after = await served("early");
    expect(after.chain).toBe("macswap");
    expect(after.etag).not.toBe(before.etag);
    await waitFor(2);
    expect(messages[1]).toEqual({ type: "assignment-changed", etag: after.etag });
    ws.close();

    // Enrolled later through the API: no new assign needed.
    await h.enrol("late", { site: "lab", role: "edge" });
    expect((await served("late")).chain).toBe("macswap");
    expect((await summary("late")).assignedBy).toEqual({
      kind: "selector",
      rule: assigned.rule!.id,
      selector: { site: "lab" },
    });
    // Enrolled on the data dir by another process (`device enroll --data`) while the controller runs.
    const direct = DataDir.open(h.dir);
    try {
      h.bundles.direct = await direct.enrolDevice("direct", { site: "lab" }, h.controller.url);
    } finally {
      await direct.close();
    }
    expect((await served("direct")).chain).toBe("macswap");
  });

  it("gives nothing to a device whose labels do not match", async () => {
    expect((await served("other")).chain).toBeNull();
    const other = await summary("other");
    expect(other.assigned).toBeNull();
    expect(other.assignedBy).toBeNull();
  });

  it("lets an explicit assignment win over a rule, and a newer rule win over an older one", async () => {
    await h.enrol("pinned", { site: "lab", role: "edge" });
    expect((await assign({ chain: "acl", devices: ["pinned"] })).assigned).toEqual(["pinned"]);

    const newer = await assign({ chain: "acl", selector: { role: "edge" } });
    expect(newer.assigned).toEqual(["late"]);
    expect(newer.overridden).toEqual(["pinned"]);
    expect((await served("late")).chain).toBe("acl");
    expect((await summary("late")).assignedBy).toMatchObject({ kind: "selector", rule: newer.rule!.id });
    expect((await served("early")).chain).toBe("macswap");

    // An explicit assignment outranks even the newest rule.
    const overEdge = await assign({ chain: "macswap", devices: ["pinned"] });
    expect(overEdge.assigned).toEqual(["pinned"]);
    expect((await served("pinned")).chain).toBe("macswap");
    expect((await summary("pinned")).assignedBy).toEqual({ kind: "explicit" });

    // Assigning the older selector again replaces its rule, which is now the newest.
    const again = await assign({ chain: "macswap", selector: { site: "lab" } });
    expect(again.rule!.id).toBeGreaterThan(newer.rule!.id);
    expect((await served("late")).chain).toBe("macswap");
    const rules = ListSelectorRulesResponse.parse((await op("/v1/assignments")).json()).rules;
    expect(rules.map((r) => [r.selector, r.chain])).toEqual([
      [{ role: "edge" }, "acl"],
      [{ site: "lab" }, "macswap"],
    ]);
  });

  it("keeps rules across a restart", async () => {
    const before = await served("late");
    await h.restart();
    const after = await served("late");
    expect(after).toEqual(before);
    expect(ListSelectorRulesResponse.parse((await op("/v1/assignments")).json()).rules).toHaveLength(2);
  });

  it("removes a rule or a device's own assignment, and refuses to remove what does not exist", async () => {
    const missing = await unassign({ devices: ["pinned"], selector: { site: "nowhere" } });
    expect(missing.status).toBe(404);
    expect(missing.json().error).toBe("no selector rule has exactly the selector site=nowhere");
    expect((await summary("pinned")).assignedBy).toEqual({ kind: "explicit" });
    const ghost = await unassign({ devices: ["ghost"] });
    expect(ghost.status).toBe(404);
    expect(ghost.json().error).toBe("device ghost is not enrolled");
    const empty = await unassign({});
    expect(empty.status).toBe(400);
    expect(empty.json().error).toMatch(/^invalid unassign request: devices: give devices/);

    const beforeLate = await served("late");
    const removed = await unassign({ selector: { site: "lab" } });
    expect(removed.status, removed.body.toString()).toBe(200);
    const body = RemoveAssignmentResponse.parse(removed.json());
    expect(body.removedRules.map((r) => r.chain)).toEqual(["macswap"]);
    expect(body.changed).toEqual(["direct", "early", "late"]);
    expect((await served("early")).chain).toBeNull();
    const afterLate = await served("late");
    expect(afterLate.chain).toBe("acl");
    expect(afterLate.etag).not.toBe(beforeLate.etag);

    const cleared = RemoveAssignmentResponse.parse((await unassign({ devices: ["pinned"] })).json());
    expect(cleared).toMatchObject({ cleared: ["pinned"], changed: ["pinned"] });
    expect((await served("pinned")).chain).toBe("acl");
    expect((await summary("pinned")).assignedBy).toMatchObject({
      kind: "selector",
      selector: { role: "edge" },
    });
  });
});
