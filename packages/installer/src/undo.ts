import type { Logger } from "@galette/log";

/**
 * The undo journal of one installation attempt: each step that changed the kernel or the
 * filesystem registers how to take it back; on failure they run newest first. A step that
 * fails is logged and the rest still run, so one stuck handle does not leave the others.
 */
export class Undo {
  #steps: Array<[string, () => void]> = [];
  push(what: string, step: () => void): void {
    this.#steps.push([what, step]);
  }
  run(log: Logger): void {
    for (const [what, step] of this.#steps.reverse()) {
      try {
        step();
      } catch (err) {
        log.error({ err, step: what }, "rollback step failed");
      }
    }
    this.#steps = [];
  }
}
