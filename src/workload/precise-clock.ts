import { Worker } from 'node:worker_threads';
import type { Clock } from './dispatcher.ts';

/**
 * A clock whose sleeps end within tens of µs instead of libuv's whole
 * milliseconds (its timers and epoll timeout count in ms, so a 0.2 ms wait
 * ends 1–2 ms later). A worker thread blocks in `Atomics.wait` with the
 * deadline as its timeout (a futex, so the kernel's high-resolution timers;
 * no polling), then posts one message, which wakes the event loop at once.
 * One sleep is pending at a time (the dispatcher's); a newer sleep
 * replaces an older one. The worker reads `process.hrtime`, the event
 * loop `performance.now()` (no allocation), both the monotonic clock: the
 * deadline is passed with their offset, measured once. `close()` ends the
 * worker.
 */
export interface PreciseClock extends Clock {
  close(): Promise<void>;
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const generation = new Int32Array(workerData, 0, 1);
const deadline = new Float64Array(workerData, 8, 1);
const nowMs = () => { const [s, ns] = process.hrtime(); return s * 1e3 + ns / 1e6; };
let fired = 0;
for (;;) {
  const gen = Atomics.load(generation, 0);
  if (gen < 0) break;
  if (gen === fired) { Atomics.wait(generation, 0, gen); continue; }
  const left = deadline[0] - nowMs();
  if (left > 0.01) { Atomics.wait(generation, 0, gen, left); continue; }
  fired = gen;
  parentPort.postMessage(gen);
}
`;

function hrtimeMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

export function preciseClock(): PreciseClock {
  const shared = new SharedArrayBuffer(16);
  const generation = new Int32Array(shared, 0, 1);
  const deadline = new Float64Array(shared, 8, 1);
  const worker = new Worker(WORKER, { eval: true, workerData: shared });
  const offset = hrtimeMs() - performance.now();
  worker.unref();
  let pending: { gen: number; resolve: () => void } | undefined;
  worker.on('message', (gen: number) => {
    if (pending && pending.gen === gen) {
      const { resolve } = pending;
      pending = undefined;
      resolve();
    }
  });
  let failed: Error | undefined;
  worker.on('error', (error) => {
    failed = error;
    pending?.resolve();
  });
  return {
    now: () => performance.now(),
    sleep(ms: number): Promise<void> {
      if (failed) return new Promise((resolve) => setTimeout(resolve, ms));
      deadline[0] = performance.now() + offset + ms;
      const gen = Atomics.add(generation, 0, 1) + 1;
      Atomics.notify(generation, 0);
      return new Promise((resolve) => {
        pending?.resolve();
        pending = { gen, resolve };
      });
    },
    yieldToIo: () => new Promise((resolve) => setImmediate(resolve)),
    async close(): Promise<void> {
      Atomics.store(generation, 0, -1);
      Atomics.notify(generation, 0);
      pending?.resolve();
      pending = undefined;
      await worker.terminate();
    },
  };
}
