import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lineChain } from "./chain-fixtures";
import { type Harness, startHarness } from "./helpers";

describe("POST /v1/chains: limits answer 4xx naming the limit, never 500", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  it.each([8000, 300])("a %i-NF line chain: 400 at file:line with the 256-instance limit", async (n) => {
    const res = await h.call("/v1/chains", {
      method: "POST",
      token: h.token,
      body: { file: `line-${n}.toml`, toml: lineChain(n) },
    });
    expect(res.status, res.body.toString().slice(0, 300)).toBe(400);
    expect(res.json().error).toMatch(
      new RegExp(
        `^chain line-${n}\\.toml is invalid: line-${n}\\.toml:511:12: error: the chain has ${n} NF instances, but a device holds at most 255: the 256-instance limit`,
      ),
    );
    // nothing was stored
    const list = await h.call("/v1/chains", { token: h.token });
    expect(JSON.stringify(list.json())).not.toContain(`line-${n}`);
  });

  it("an input limit (a name longer than 63 characters): 400 naming it", async () => {
    const long = "n".repeat(64);
    const toml = `[functions.${long}]\n[[links]]\nfrom = "rx"\nto = ["${long}"]\n[[links]]\nfrom = "${long}"\nto = ["tx"]\n`;
    const res = await h.call("/v1/chains", {
      method: "POST",
      token: h.token,
      body: { file: "long.toml", toml },
    });
    expect(res.status).toBe(400);
    expect(res.json().error).toMatch(/long\.toml:1:12: error: .*limited to 63 \(input limit: name length\)/);
  });
});
