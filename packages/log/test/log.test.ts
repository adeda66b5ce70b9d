import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const script = (opts: string) =>
  `import { createLogger } from ${JSON.stringify(join(import.meta.dirname, "../src/index.ts"))};` +
  `const log = createLogger("t", ${opts}); log.debug("hidden-unless-debug"); log.info({ nf: "dpi" }, "hello");`;

function run(opts: string, env: Record<string, string> = {}) {
  return execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script(opts)], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

describe("createLogger", () => {
  it("writes JSON lines to the chosen fd, honouring GALETTE_LOG_LEVEL", () => {
    const info = run("{ fd: 1 }");
    const line = JSON.parse(info.trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ name: "t", msg: "hello", nf: "dpi", level: 30 });
    expect(run("{ fd: 1 }", { GALETTE_LOG_LEVEL: "debug" })).toContain("hidden-unless-debug");
  });

  it("prints readable lines when asked to be pretty", () => {
    const text = run("{ fd: 1, pretty: true }");
    expect(text).toMatch(/INFO.*\(t\).*hello/);
    expect(() => JSON.parse(text)).toThrow();
  });
});
