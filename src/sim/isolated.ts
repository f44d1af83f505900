import { Worker } from 'node:worker_threads';
import type { Trace } from '../workload/index.ts';
import { type PolicyResult, type SimOptions, simulate } from './simulate.ts';

/**
 * `SimOptions` a worker thread can be handed: the cold-start time is one
 * figure for every function, and nothing else is a function.
 */
export type IsolatedSimOptions = Omit<
  SimOptions,
  'startMs' | 'runMs' | 'cpu' | 'stopMs' | 'onProgress'
> & {
  startMs: number;
  onProgress?: SimOptions['onProgress'];
};

/** What the parent sends a worker (workerData). */
export interface WorkerTask {
  trace: Trace;
  options: Omit<IsolatedSimOptions, 'onProgress'>;
}

/** What a worker posts back: progress, its one result, or why it failed. */
export type WorkerMessage =
  | { kind: 'progress'; policy: string; done: number; total: number }
  | { kind: 'result'; result: PolicyResult }
  | { kind: 'error'; name: string; message: string; stack?: string };

const WORKER = new URL('./worker.ts', import.meta.url);

/**
 * `simulate`, each policy in a worker thread of its own, one after another
 * (never at once: each policy's wall time is its own). A fresh heap per
 * policy: a later policy does not pay for an earlier one's garbage, heap
 * size and JIT state, so the figures do not depend on the policies' order.
 * The results are those of `simulate` with the same options.
 */
export async function simulateIsolated(
  trace: Trace,
  options: IsolatedSimOptions,
): Promise<PolicyResult[]> {
  const { onProgress, ...rest } = options;
  const results: PolicyResult[] = [];
  for (const policy of options.policies)
    results.push(await inWorker({ trace, options: { ...rest, policies: [policy] } }, onProgress));
  return results;
}

/** The worker's side: one policy's simulation. */
export async function runTask(
  task: WorkerTask,
  post: (message: WorkerMessage, transfer?: ArrayBuffer[]) => void,
): Promise<void> {
  const { startMs, ...rest } = task.options;
  const [result] = await simulate(task.trace, {
    ...rest,
    startMs: () => startMs,
    onProgress: (policy, done, total) => post({ kind: 'progress', policy, done, total }),
  });
  // The invocation records' arrays move to the parent instead of being copied.
  const { meta: _meta, errorCode: _codes, ...arrays } = result.data;
  const buffers = Object.values(arrays).map((array) => array.buffer as ArrayBuffer);
  post({ kind: 'result', result }, buffers);
}

function inWorker(task: WorkerTask, onProgress: SimOptions['onProgress']): Promise<PolicyResult> {
  return new Promise((resolve, reject) => {
    // The worker loads TypeScript as this thread does (tsx), whatever started this one.
    const worker = new Worker(WORKER, {
      workerData: task,
      execArgv: ['--import', import.meta.resolve('tsx')],
    });
    let result: PolicyResult | undefined;
    let failure: Error | undefined;
    worker.on('message', (message: WorkerMessage) => {
      if (message.kind === 'progress') onProgress?.(message.policy, message.done, message.total);
      else if (message.kind === 'result') result = message.result;
      else {
        failure = new Error(message.message);
        failure.name = message.name;
        if (message.stack) failure.stack = message.stack;
      }
    });
    worker.on('error', (err) => (failure ??= err));
    worker.on('exit', (code) => {
      if (result && !failure) resolve(result);
      else reject(failure ?? new Error(`simulation worker exited with code ${code} and no result`));
    });
  });
}
