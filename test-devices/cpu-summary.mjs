/**
 * Summarises test-devices/sample.sh's output for run.sh: CPU seconds per process (user and
 * system) between FROM and TO (epoch seconds), the busiest process's threads, and the kernel
 * functions its running or blocked threads (and its main thread, whatever it did) were seen
 * in most. Tasks alive in only part of the
 * window count from their first to their last sample.
 * usage: node cpu-summary.mjs SAMPLE_LOG FROM TO
 */
import { readFileSync } from "node:fs";

const [file, fromArg, toArg] = process.argv.slice(2);
if (!file || !fromArg || !toArg) throw new Error("usage: cpu-summary.mjs SAMPLE_LOG FROM TO");
const from = Number(fromArg);
const to = Number(toArg);
const HZ = 100; // USER_HZ on Debian's arm64 kernel

/** tid → {pid, comm, first/last [utime, stime]} within the window */
const tasks = new Map();
/** pid → main thread comm */
const procs = new Map();
/** pid → Map(where → samples) */
const stacks = new Map();
/** the stack being read: its task and frames */
let stack = { key: "", pid: "", frames: [] };
let t = 0;
let samples = 0;
// the innermost frame that is not the scheduler's or a lock's: where the task works or waits
const skip =
  /^(__schedule|schedule|schedule_timeout|schedule_hrtimeout|preempt_schedule|__cond_resched|_raw_spin|do_nanosleep|__switch_to)/;
/** tid → state letter in this pass (R running, D uninterruptible wait, S sleeping, …) */
const states = new Map();
const flush = () => {
  const { key, frames } = stack;
  stack = { key: "", pid: "", frames: [] };
  // only what runs or waits uninterruptibly (I/O, a lock): a sleeping thread costs nothing
  // (and every state of a main thread: where a stalled agent's event loop is stuck)
  if (!key || !(/^[RD]$/.test(states.get(key) ?? "") || key === frames.pid)) return;
  // interrupted in user space (no system call on the stack): its own code runs
  const preempted =
    !frames.some((x) => /sys_|el0_svc/.test(x)) &&
    frames.some((x) =>
      /^(irqentry_exit_to_user_mode|exit_to_user_mode|el0_interrupt|el0t_64_irq|el0_da|el0_ia|do_notify_resume)/.test(
        x,
      ),
    );
  const top = frames.find((x) => !skip.test(x)) ?? frames[0];
  const i = frames.indexOf(top);
  const where = frames.length && !preempted ? frames.slice(i, i + 3).join("<") : "user";
  if (!stacks.has(frames.pid)) stacks.set(frames.pid, new Map());
  const m = stacks.get(frames.pid);
  m.set(where, (m.get(where) ?? 0) + 1);
};
for (const line of readFileSync(file, "utf8").split("\n")) {
  if (line.startsWith("T ")) {
    flush();
    t = Number(line.slice(2));
    if (t >= from && t <= to) samples++;
    continue;
  }
  if (t < from || t > to) continue;
  const m = /^\/proc\/(\d+)\/task\/(\d+)\/(stat|stack):(.*)$/.exec(line);
  if (!m) continue;
  const [, pid, tid, kind, rest] = m;
  if (kind === "stat") {
    const comm = rest.slice(rest.indexOf("(") + 1, rest.lastIndexOf(")")).replace(/ /g, "_");
    const f = rest.slice(rest.lastIndexOf(")") + 2).split(" ");
    const cpu = [Number(f[11]), Number(f[12])];
    if (pid === tid) procs.set(pid, comm);
    states.set(tid, f[0]);
    const task = tasks.get(tid);
    if (task) task.last = cpu;
    else tasks.set(tid, { pid, comm, first: cpu, last: cpu });
    continue;
  }
  if (stack.key !== tid) {
    flush();
    stack.key = tid;
    stack.frames.pid = pid;
  }
  const frame = rest.replace(/^\[<[0-9a-f]+>\] /, "").replace(/\+.*/, "");
  if (frame) stack.frames.push(frame);
}
flush();
const byProc = new Map();
for (const [tid, task] of tasks) {
  const user = (task.last[0] - task.first[0]) / HZ;
  const sys = (task.last[1] - task.first[1]) / HZ;
  const p = byProc.get(task.pid) ?? {
    pid: task.pid,
    comm: procs.get(task.pid) ?? task.comm,
    user: 0,
    sys: 0,
    threads: [],
  };
  p.user += user;
  p.sys += sys;
  p.threads.push({ tid, comm: task.comm, cpu: user + sys });
  byProc.set(task.pid, p);
}
const busiest = [...byProc.values()].sort((a, b) => b.user + b.sys - (a.user + a.sys));
const window = to - from;
console.log(`  device CPU in those ${window.toFixed(1)} s (2 emulated CPUs, ${samples} samples):`);
for (const p of busiest.slice(0, 6))
  console.log(
    `    ${(p.user + p.sys).toFixed(1).padStart(6)} s  ${p.comm} (pid ${p.pid}): user ${p.user.toFixed(1)} s, system ${p.sys.toFixed(1)} s`,
  );
// the two busiest, and the agent (node) and its NF worker wherever they rank
for (const p of busiest.filter((x, i) => i < 2 || /^(node|galette)/.test(x.comm))) {
  const threads = p.threads.filter((x) => x.cpu > 0.5).sort((a, b) => b.cpu - a.cpu);
  if (threads.length > 1)
    console.log(
      `    ${p.comm}'s threads: ${threads.map((x) => `${x.comm} ${x.cpu.toFixed(1)} s`).join(", ")}`,
    );
  const seen = [...(stacks.get(p.pid) ?? new Map())].sort((a, b) => b[1] - a[1]).slice(0, 5);
  if (seen.length)
    console.log(
      `    ${p.comm} (pid ${p.pid}) running/blocked (main thread: also waiting) in: ${seen.map(([w, n]) => `${w} ×${n}`).join(", ")}`,
    );
}
