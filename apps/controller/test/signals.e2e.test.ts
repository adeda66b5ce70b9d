/**
 * `pnpm galette …` started in the background by a script and stopped with a signal to the
 * PID the script got (pnpm's, not the process group): the command must stop cleanly, and
 * nothing may be left behind (no XDP program, no orphaned node process).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createVethPair, describeKernel, nsRun, type VethPair } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";

const root = join(import.meta.dirname, "../../..");
const scratch = mkdtempSync(join(tmpdir(), "galette-signals-"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** `pnpm galette ARGS` as a shell script's `cmd &` would start it (same process group). */
function startGalette(args: string[]): Run {
  const child = spawn("pnpm", ["galette", ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GALETTE_LOG_LEVEL: "info" },
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return { child, output: () => out, exited };
}

/** Every process below `pid` (its children, their children, …). */
function descendants(pid: number): number[] {
  let text = "";
  try {
    text = execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" });
  } catch {
    return []; // ps exits 1 when there are none
  }
  const kids = text
    .split("\n")
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
  return [...kids, ...kids.flatMap(descendants)];
}

const alive = (pid: number) =>
  existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");

async function waitFor(what: string, ok: () => boolean, ms: number, run: Run): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${run.output()}`);
    if (run.child.exitCode !== null) throw new Error(`exited before ${what}; output:\n${run.output()}`);
    await sleep(100);
  }
}

/** Sends `signal` to pnpm's PID only; expects pnpm and everything it started gone within 3 s. */
async function stopWith(run: Run, signal: NodeJS.Signals): Promise<{ code: number | null; ms: number }> {
  const below = descendants(run.child.pid!);
  expect(below.length).toBeGreaterThan(0);
  const sent = Date.now();
  process.kill(run.child.pid!, signal);
  const timeout = sleep(10_000).then(() => undefined);
  const done = await Promise.race([run.exited, timeout]);
  try {
    expect(done, `pnpm still running 10 s after ${signal}; output:\n${run.output()}`).toBeDefined();
    const ms = done!.at - sent;
    expect(ms, run.output()).toBeLessThan(3000);
    // the node process pnpm ran exits with it, never left as an orphan
    const deadline = Date.now() + 3000 - ms;
    while (below.some(alive) && Date.now() < deadline) await sleep(50);
    expect(below.filter(alive), run.output()).toEqual([]);
    return { code: done!.code, ms };
  } finally {
    for (const pid of [run.child.pid!, ...below]) if (alive(pid)) process.kill(pid, "SIGKILL");
  }
}

async function xdpProgOn(veth: VethPair): Promise<number | undefined> {
  const r = await nsRun(veth.nsB, "ip", ["-j", "link", "show", "dev", veth.ifB]);
  const [link] = JSON.parse(r.stdout) as Array<{ xdp?: { prog?: { id: number } } }>;
  return link?.xdp?.prog?.id;
}

describeKernel("signals to `pnpm galette` (its PID only)", () => {
  let veth: VethPair;
  const state = join(scratch, "state");

  beforeAll(async () => {
    veth = await createVethPair("sig");
  });
  afterAll(async () => {
    try {
      // a failed test must not leave a chain behind
      execFileSync(
        "pnpm",
        [
          "-s",
          "galette",
          "dataplane",
          "down",
          "--iface",
          veth.ifB,
          "--netns",
          veth.nsB,
          "--state-dir",
          state,
        ],
        {
          cwd: root,
          stdio: "ignore",
        },
      );
    } catch {
      // nothing installed
    } finally {
      await veth?.cleanup();
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  const up = () =>
    startGalette([
      "dataplane",
      "up",
      "--iface",
      veth.ifB,
      "--netns",
      veth.nsB,
      "--state-dir",
      state,
      "--workers",
      "1",
      "chains/macswap.toml",
    ]);

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`dataplane up: ${signal} uninstalls and exits within 3 s`, async () => {
      const run = up();
      await waitFor("the first counter print", () => run.output().includes('chain "macswap"'), 120_000, run);
      expect(await xdpProgOn(veth)).toBeGreaterThan(0);
      const { code } = await stopWith(run, signal);
      expect(code, run.output()).toBe(0);
      expect(run.output()).toContain("chain uninstalled");
      expect(await xdpProgOn(veth)).toBeUndefined();
    });
  }

  it("dataplane up: pnpm killed outright (SIGKILL) → the command notices and uninstalls", async () => {
    const run = up();
    await waitFor("the first counter print", () => run.output().includes('chain "macswap"'), 120_000, run);
    const below = descendants(run.child.pid!);
    process.kill(run.child.pid!, "SIGKILL");
    await run.exited;
    const deadline = Date.now() + 5000;
    while (below.some(alive) && Date.now() < deadline) await sleep(50);
    expect(below.filter(alive)).toEqual([]);
    expect(await xdpProgOn(veth)).toBeUndefined();
  });

  it("controller serve: SIGTERM closes it and leaves no process", async () => {
    const data = join(scratch, "controller");
    execFileSync("pnpm", ["-s", "galette", "pki", "init", "--data", data], { cwd: root, stdio: "ignore" });
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      rmSync(join(data, "controller.json"), { force: true });
      const run = startGalette(["controller", "serve", "--data", data, "--listen", "127.0.0.1:0"]);
      await waitFor(
        "the controller to listen",
        () => existsSync(join(data, "controller.json")),
        120_000,
        run,
      );
      const { code } = await stopWith(run, signal);
      expect(code, run.output()).toBe(0);
      expect(run.output()).toContain("closing connections and the database");
    }
  });
});
