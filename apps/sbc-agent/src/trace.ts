/**
 * A packet trace an operator asked for through the controller (`galette trace --device`):
 * runs the installer's Tracer on this device's installation and uploads the frames in
 * batches until the request's count or timeout. One at a time per agent.
 */
import { type InterfaceTarget, Tracer } from "@galette/installer";
import type { Logger } from "@galette/log";
import type { TracedFrame, TraceRequest, TraceUpload } from "@galette/protocol";

const POLL_MS = 50;

export interface DeviceTraceOptions {
  id: string;
  request: TraceRequest;
  target: InterfaceTarget;
  stateDir: string;
  upload: (body: TraceUpload) => Promise<{ more: boolean }>;
  log: Logger;
}

export async function runDeviceTrace(o: DeviceTraceOptions): Promise<void> {
  const log = o.log.child({ trace: o.id });
  let tracer: Tracer;
  try {
    tracer = Tracer.start(o.target, {
      filter: o.request.filter,
      sample: o.request.sample,
      stateDir: o.stateDir,
      withData: o.request.withData,
    });
  } catch (err) {
    log.warn({ err }, "trace refused");
    await o.upload({ frames: [], done: true, error: (err as Error).message });
    return;
  }
  log.info({ filter: o.request.filter, count: o.request.count }, "tracing for the controller");
  const deadline = Date.now() + o.request.timeoutSeconds * 1000;
  let sent = 0;
  try {
    for (;;) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      let frames: TracedFrame[];
      try {
        frames = tracer.poll().slice(0, o.request.count - sent);
      } catch (err) {
        log.warn({ err }, "trace failed");
        await o.upload({ frames: [], done: true, error: (err as Error).message });
        break;
      }
      sent += frames.length;
      const done = sent >= o.request.count || Date.now() >= deadline;
      if (frames.length > 0 || done) {
        const { more } = await o.upload({ frames, done });
        if (!more) break;
      }
      if (done) break;
    }
  } catch (err) {
    log.warn({ err }, "trace upload failed; stopping the trace");
  } finally {
    tracer.stop();
    log.info({ frames: sent }, "trace ended");
  }
}
