import { parentPort, workerData } from 'node:worker_threads';
import { type WorkerMessage, type WorkerTask, runTask } from './isolated.ts';

// One policy's simulation in a thread of its own (see simulateIsolated).
const port = parentPort;
if (port) {
  const post = (message: WorkerMessage, transfer?: ArrayBuffer[]): void =>
    port.postMessage(message, transfer);
  runTask(workerData as WorkerTask, post).catch((err: unknown) => {
    const error = err instanceof Error ? err : new Error(String(err));
    post({ kind: 'error', name: error.name, message: error.message, stack: error.stack });
  });
}
