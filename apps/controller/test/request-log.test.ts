import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDir } from "../src/control";
import { type Harness, startHarness } from "./helpers";

/** Device requests: debug lines and a summary at info; last-seen times written in batches. */
describe("device request logging and last-seen batching", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.cleanup();
  });

  it("logs device requests at debug only, operator requests as before, and a summary of device requests on close", async () => {
    await h.enrol("pi-log");
    for (let i = 0; i < 5; i++) {
      const res = await h.call("/v1/device/assignment", { client: h.asDevice("pi-log") });
      expect(res.status).toBe(200);
    }
    const refused = await h.call("/v1/device/assignment");
    expect(refused.status).toBe(401);
    const completed = h.logs.filter((l) => l.msg === "request completed" || l.msg === "incoming request");
    // the enrolment (an operator call) is logged; no device request is, at info
    expect(completed.some((l) => JSON.stringify(l).includes("/v1/devices"))).toBe(true);
    expect(completed.filter((l) => JSON.stringify(l).includes("/v1/device/assignment"))).toEqual([]);
    // the device's last-seen time is written in a batch, within one flush interval
    await expect
      .poll(
        async () => {
          const data = DataDir.open(h.dir);
          try {
            return (await data.repo.getDevice("pi-log"))?.lastSeenAt ?? null;
          } finally {
            await data.close();
          }
        },
        { timeout: 10_000 },
      )
      .not.toBeNull();
    await h.restart();
    const summary = h.logs.find((l) => l.msg === "device requests");
    expect(summary).toMatchObject({
      requests: 6,
      errors: 0,
      devices: 1,
      routes: { "GET /v1/device/assignment": 6 },
      statuses: { 200: 5, 401: 1 },
    });
    expect(summary!.p99Ms).toBeGreaterThanOrEqual(summary!.p50Ms as number);
    // how late the event loop ran: what a request waited before the times above began
    expect(summary!.loopDelayMaxMs).toBeGreaterThanOrEqual(summary!.loopDelayP99Ms as number);
    expect(summary!.loopDelayP99Ms).toBeGreaterThanOrEqual(0);
  });
});
