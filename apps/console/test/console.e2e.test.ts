/**
 * The web console in a real browser (Debian's chromium, driven by playwright-core) against
 * a real controller with two real agents on veth pairs: log in, watch both devices
 * converge, open the chain graph, set an allow-list entry and watch the counters move as
 * frames go through; and the attacks a session cookie invites.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { CSRF_HEADER, SESSION_COOKIE } from "@galette/protocol";
import { describeKernel, ipv4Bytes } from "@galette/testkit";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bounce, Fleet, repoRoot, waitFor } from "../../sbc-agent/test/fleet";

const CHROMIUM = process.env.GALETTE_CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = process.env.GALETTE_CONSOLE_SCREENSHOTS ?? path.join(tmpdir(), "galette-console-screenshots");
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

/** nf::LpmKeyV4 { prefix_len: u32 LE, addr } as hex: an allow-list key. */
const lpmKeyHex = (ip: string, prefix = 32) => {
  const k = Buffer.alloc(8);
  k.writeUInt32LE(prefix, 0);
  ipv4Bytes(ip).copy(k, 4);
  return k.toString("hex");
};

describeKernel("web console in chromium: real controller, two agents on veth", () => {
  const fleet = new Fleet();
  const A = "edge-a";
  const B = "edge-b";
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    // The controller serves apps/console/dist, which `make setup` (run before `make test`)
    // builds. Not rebuilt here: other tests' controllers read it while they start.
    if (!existsSync(path.join(repoRoot, "apps/console/dist/index.html")))
      throw new Error(
        "apps/console/dist is not built: run make setup (or pnpm --filter @galette/console build)",
      );
    mkdirSync(SHOTS, { recursive: true });
    await fleet.start({
      devices: [
        { name: A, labels: { role: "edge" }, websocket: true, pollIntervalSeconds: 30 },
        { name: B, labels: { role: "edge" }, websocket: true, pollIntervalSeconds: 30, xdpMode: "generic" },
      ],
    });
    for (const nf of ["access-control", "weak-classifier", "dpi"]) {
      expect((await fleet.publish(nf)).build).toBe("built");
    }
    expect((await fleet.push("chains/security.toml")).version).toBe(1);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // running as root in a container: chromium's own sandbox needs user namespaces it may not get
      args: ["--no-sandbox"],
    });
    // The controller's certificate chains to the fleet's own test CA, which this browser
    // profile does not know; the cookie's Secure flag still applies (the page is https).
    context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: DESKTOP });
    page = await context.newPage();
  });
  afterAll(async () => {
    await browser?.close();
    await fleet.cleanup();
  });

  const url = () => fleet.controller.url;

  const login = async (p: Page, token: string) => {
    await p.goto(url());
    await p.getByLabel("Operator token").fill(token);
    await p.getByRole("button", { name: "Log in" }).click();
    await p.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
  };

  it("logs in and shows both devices converging on the chain they are assigned", async () => {
    await page.goto(url());
    // a wrong token: a clear refusal, no session
    await page.getByLabel("Operator token").fill("glt_not-a-token");
    await page.getByRole("button", { name: "Log in" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("invalid token");
    await login(page, fleet.token);
    const row = (name: string) => page.locator(`tr[data-device="${name}"]`);
    await row(A).waitFor();
    await row(B).waitFor();
    await fleet.operator.assignChain({ chain: "security", selector: { role: "edge" } });
    for (const name of [A, B]) {
      await expect
        .poll(() => row(name).textContent(), { timeout: 60_000, interval: 250 })
        .toMatch(/security v1.*converged/);
      const text = (await row(name).textContent()) ?? "";
      expect(text).toContain("online");
      expect(text).toContain(execFileSync("uname", ["-m"], { encoding: "utf8" }).trim());
      // what the agent's probe found, as it reports it
      expect(await row(name).locator('[data-label="Capabilities"]').textContent()).toMatch(
        /XDP (native|generic)/,
      );
    }
    await page.screenshot({ path: path.join(SHOTS, "fleet-desktop.png"), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: path.join(SHOTS, "fleet-phone.png"), fullPage: true });
    await page.setViewportSize(DESKTOP);
  });

  it("opens the chain graph: NFs placed XDP or userland, their edges and exits", async () => {
    await page.locator(`tr[data-device="${A}"] [data-testid="installed"] a`).click();
    await page.getByRole("heading", { name: "Chain security v1" }).waitFor();
    const graph = page.getByTestId("chain-graph");
    await graph.waitFor();
    for (const node of ["rx", "access-control", "weak-classifier", "dpi", "tx", "drop"]) {
      await expect.poll(() => graph.locator(`[data-node="${node}"]`).count(), { timeout: 5000 }).toBe(1);
    }
    expect(await graph.locator('[data-node="dpi"]').getAttribute("class")).toContain("userland");
    expect(await graph.locator('[data-node="access-control"]').getAttribute("class")).toContain("xdp");
    // weak-classifier's Suspicious upcalls to dpi in userland
    expect(await graph.locator("g.edge.upcall").count()).toBeGreaterThanOrEqual(1);
    expect(await graph.locator("g.edge.tailcall").count()).toBeGreaterThanOrEqual(2);
    await page.screenshot({ path: path.join(SHOTS, "chain-desktop.png"), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.getByTestId("chain-graph").waitFor();
    await page.screenshot({ path: path.join(SHOTS, "chain-phone.png"), fullPage: true });
    await page.setViewportSize(DESKTOP);
    // the same graph as tables, for keyboard and screen-reader users: reachable with the keyboard
    await page.getByRole("tab", { name: "Graph" }).focus();
    await page.keyboard.press("ArrowRight");
    await expect
      .poll(() => page.getByRole("tab", { name: "Action tables" }).getAttribute("aria-selected"))
      .toBe("true");
    await page.getByRole("table", { name: /weak-classifier/ }).waitFor();
    // the skip link moves focus to the page's heading and stays on this page
    await page.getByRole("button", { name: "Skip to content" }).focus();
    await page.keyboard.press("Enter");
    expect(page.url()).toContain("#/chains/security");
    expect(await page.evaluate<string>("document.activeElement?.textContent ?? ''")).toBe(
      "Chain security v1",
    );
  });

  it("sets an allow-list entry (signed in the page with the release key) and the counters show frames allowed", async () => {
    const veth = fleet.agent(A).veth;
    // Not on the allow-list yet: access-control denies every frame.
    expect(await bounce(veth, "console-before", 10, veth.ipA)).toHaveLength(0);

    await page.getByRole("tab", { name: /Maps/ }).click();
    await page.getByLabel("Map", { exact: true }).selectOption("access-control.allow_list");
    await page.getByLabel(/^Key/).fill(lpmKeyHex(veth.ipA));
    await page.getByLabel(/^Value/).fill("01000000");
    await page.getByLabel(/^Release key/).setInputFiles(fleet.releaseKeyFile);
    await expect.poll(() => page.locator("#release-key-help").textContent()).toContain("Key loaded");
    await page.getByRole("button", { name: "Set entry" }).click();
    await expect
      .poll(() => page.getByRole("status").last().textContent(), { timeout: 10_000 })
      .toMatch(/Saved, signed/);
    expect(await page.getByTestId("map-entries").textContent()).toContain(lpmKeyHex(veth.ipA));
    await page.screenshot({ path: path.join(SHOTS, "maps-desktop.png"), fullPage: true });

    // The device's page: live counters per NF.
    await page.goto(`${url()}/#/devices/${A}`);
    await page.getByRole("heading", { name: A, level: 1 }).waitFor();
    const allowed = page.locator('table[data-nf="access-control"] tr[data-counter="Allowed"] td[data-value]');
    const readAllowed = async () => Number((await allowed.getAttribute("data-value")) ?? 0);
    await allowed.waitFor();
    const before = await readAllowed();
    // The agent applies the signed entry; then frames from veth.ipA come back.
    const back = await waitFor("frames from the allowed address to come back", 30_000, async () => {
      const received = await bounce(veth, "console-after", 10, veth.ipA);
      return received.length > 0 ? received : undefined;
    });
    expect(back.length).toBeGreaterThan(0);
    await expect
      .poll(readAllowed, { timeout: 15_000, interval: 250 })
      .toBeGreaterThanOrEqual(before + back.length);
    // rates come from consecutive reports: the next one gives a number
    const rate = page.locator('table[data-nf="access-control"] tr[data-counter="Allowed"] td[data-rate]');
    await expect.poll(() => rate.getAttribute("data-rate"), { timeout: 10_000 }).toMatch(/^\d/);
    await page.screenshot({ path: path.join(SHOTS, "device-desktop.png"), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: path.join(SHOTS, "device-phone.png"), fullPage: true });
    await page.setViewportSize(DESKTOP);
    // the other device's list was not touched by this edit: it still drops these
    const vethB = fleet.agent(B).veth;
    expect(await bounce(vethB, "console-b", 5, vethB.ipA)).toHaveLength(0);
  });

  it("sets the session cookie HttpOnly, Secure, SameSite=Strict, out of the page's reach", async () => {
    const cookies = await context.cookies(url());
    const session = cookies.find((c) => c.name === SESSION_COOKIE);
    expect(session).toBeDefined();
    expect(session!.httpOnly).toBe(true);
    expect(session!.secure).toBe(true);
    expect(session!.sameSite).toBe("Strict");
    expect(session!.path).toBe("/");
    expect(await page.evaluate<string>("document.cookie")).not.toContain(SESSION_COOKIE);
  });

  it("refuses the API without a cookie, and a mutating request with the cookie but without the CSRF header", async () => {
    const anonymous = await browser.newContext({ ignoreHTTPSErrors: true });
    try {
      expect((await anonymous.request.get(`${url()}/v1/devices`)).status()).toBe(401);
      expect((await anonymous.request.get(`${url()}/v1/events`)).status()).toBe(401);
    } finally {
      await anonymous.close();
    }
    // From the logged-in page itself: a fetch that leaves the header out, and one with a wrong value.
    const statuses = await page.evaluate(async (header) => {
      const put = (headers: Record<string, string>) =>
        fetch("/v1/chains/security/maps/access-control.allow_list/entries", {
          method: "PUT",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify({ delete: ["00000000c0000201"] }),
        }).then((r) => r.status);
      return [await put({}), await put({ [header]: "forged" })];
    }, CSRF_HEADER);
    expect(statuses).toEqual([403, 403]);
    // nothing changed
    const entries = await fleet.operator.getMapEntries("security", "access-control.allow_list");
    expect(entries.entries).toHaveLength(1);
  });

  it("gives a read-only session no map editing: no form, and the API refuses it", async () => {
    const { token } = await fleet.operator.createToken({ name: "console-reader", scopes: ["read"] });
    const readerContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: PHONE });
    try {
      const reader = await readerContext.newPage();
      await login(reader, token);
      await reader.goto(`${url()}/#/chains/security`);
      await reader.getByRole("tab", { name: /Maps/ }).click();
      await reader.getByText("Editing entries needs a session with the deploy scope.").waitFor();
      expect(await reader.getByRole("button", { name: "Set entry" }).count()).toBe(0);
      const status = await reader.evaluate(async (header) => {
        const session = (await (await fetch("/v1/session")).json()) as { csrf: string };
        const res = await fetch("/v1/chains/security/maps/access-control.allow_list/entries", {
          method: "PUT",
          headers: { "content-type": "application/json", [header]: session.csrf },
          body: JSON.stringify({ set: [{ key: "20000000c0000201", value: "01000000" }] }),
        });
        return { status: res.status, body: await res.text() };
      }, CSRF_HEADER);
      expect(status.status).toBe(403);
      expect(status.body).toContain("lacks the deploy scope");
      // logging out ends the session on the controller, not just in this browser
      const cookie = (await readerContext.cookies(url())).find((c) => c.name === SESSION_COOKIE)!;
      await reader.getByRole("button", { name: "Log out" }).click();
      await reader.getByLabel("Operator token").waitFor();
      const replayed = await readerContext.request.get(`${url()}/v1/devices`, {
        headers: { cookie: `${SESSION_COOKIE}=${cookie.value}` },
      });
      expect(replayed.status()).toBe(401);
    } finally {
      await readerContext.close();
    }
  });

  it("shows a device's refusal of a chain version no pinned key signed, with the version it keeps running", async () => {
    await page.goto(`${url()}/#/`);
    await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
    expect((await fleet.push("chains/security.toml", undefined, null)).version).toBe(2);
    for (const name of [A, B]) {
      const row = page.locator(`tr[data-device="${name}"]`);
      await expect
        .poll(() => row.textContent(), { timeout: 30_000, interval: 250 })
        .toMatch(/refused chain "security" v2/);
      expect(await row.locator('[data-testid="installed"]').textContent()).toBe("security v1");
    }
    await page.screenshot({ path: path.join(SHOTS, "fleet-refusal-desktop.png"), fullPage: true });
  });

  it("lists a staged rollout: its phases, the devices each reached and the gate, reached by keyboard", async () => {
    // a long soak keeps it in phase 1 while the page is looked at; aborted at the end
    const started = await fleet.operator.startRollout({
      chain: "security",
      version: 1,
      selector: { role: "edge" },
      phases: ["1", "100%"],
      soakSeconds: 3600,
      gate: "installed && aborts == 0",
    });
    await page.goto(`${url()}/#/`);
    await page.getByRole("heading", { name: "Fleet", level: 1 }).waitFor();
    await page.getByRole("link", { name: "Rollouts" }).focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Rollouts", level: 1 }).waitFor();
    await expect
      .poll(() => page.evaluate<string>("document.activeElement?.textContent ?? ''"))
      .toBe("Rollouts");
    const card = page.getByRole("article", { name: new RegExp(`#${started.id} security v1`) });
    await card.waitFor();
    expect(await card.getByTestId("rollout-state").textContent()).toBe("running");
    expect(await card.textContent()).toContain("installed && aborts == 0");
    const phase1 = card.locator('li[data-phase="1"]');
    await expect.poll(() => phase1.textContent(), { timeout: 15_000 }).toMatch(/Phase 1: 1 .*in progress/);
    const devices = phase1.getByRole("table", { name: `Phase 1 of rollout #${started.id}: 1` });
    await devices.waitFor();
    expect(await devices.locator("tr[data-device]").count()).toBe(1);
    expect(await card.locator('li[data-phase="2"]').textContent()).toContain("pending");
    await page.screenshot({ path: path.join(SHOTS, "rollouts-desktop.png"), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: path.join(SHOTS, "rollouts-phone.png"), fullPage: true });
    await page.setViewportSize(DESKTOP);

    await fleet.operator.changeRollout(started.id, "abort");
    await page.getByRole("button", { name: "Refresh" }).click();
    await expect
      .poll(() => card.getByTestId("rollout-state").textContent(), { timeout: 10_000 })
      .toBe("aborted");
    expect(await card.getByTestId("rollout-stop").textContent()).toMatch(/Stopped \(aborted\)/);
  });
});
