import { execFileSync } from "node:child_process";
import { connect, createServer, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { CONNECTION_WARN_SHARE, openFileLimit, watchConnectionCapacity } from "../src/file-limit";
import { captureLogger } from "./helpers";

describe("open connections against the open-file limit", () => {
  it("reads the soft limit a process really has (node raises it to the hard limit)", () => {
    const out = execFileSync(
      "prlimit",
      [
        "--nofile=64:300",
        process.execPath,
        "--import",
        "tsx",
        "-e",
        `import("${import.meta.dirname}/../src/file-limit.ts").then((m) => console.log(m.openFileLimit()))`,
      ],
      { encoding: "utf8" },
    );
    expect(Number(out.trim())).toBe(300);
    expect(openFileLimit("Limit  Soft Limit  Hard Limit  Units\nMax open files  1024  4096  files\n")).toBe(
      1024,
    );
    expect(openFileLimit("Max open files  unlimited  unlimited  files\n")).toBeUndefined();
    expect(openFileLimit("")).toBeUndefined();
  });

  it("warns once, with the numbers, when connections pass the share of the limit", async () => {
    const { logger, lines } = captureLogger();
    const server = createServer();
    const limit = 20;
    const watch = watchConnectionCapacity(server, logger, limit);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const sockets: Socket[] = [];
    try {
      const open = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const s = connect(port, "127.0.0.1");
          sockets.push(s);
          await new Promise((r) => s.once("connect", r));
        }
        await expect.poll(() => watch.open()).toBe(sockets.length);
      };
      const warned = () => lines.filter((l) => String(l.msg).includes("open-file limit"));
      await open(limit * CONNECTION_WARN_SHARE - 1);
      expect(warned()).toEqual([]);
      await open(3);
      expect(warned()).toHaveLength(1);
      expect(warned()[0]).toMatchObject({ level: 40, openFileLimit: limit, devicesAtMost: limit / 2 });
      expect(warned()[0]!.msg).toMatch(/LimitNOFILE/);
      // not again for every connection past the line
      await open(2);
      expect(warned()).toHaveLength(1);
      // closed connections are counted down
      for (const s of sockets.splice(0, 5)) s.destroy();
      await expect.poll(() => watch.open()).toBe(sockets.length);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
