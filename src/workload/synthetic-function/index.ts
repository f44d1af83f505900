import { spin } from './spin.ts';

/**
 * The synthetic function `petri load` deploys for every trace function: it
 * touches `event.memoryMb` of memory (capped to the function's memory minus
 * headroom for the runtime itself) and busy-loops for the rest of
 * `event.durationMs`, using the calibration the load tool measured at deploy
 * time (PETRI_SYNTH_ITERS_PER_MS). Under a CPU quota the same work takes
 * longer: that stretch is what the slowdown measures.
 */
interface SyntheticEvent {
  durationMs?: number;
  memoryMb?: number;
}

const ITERS_PER_MS = Number(process.env.PETRI_SYNTH_ITERS_PER_MS ?? '100000');
const MEMORY_CAP_MB = Number(process.env.PETRI_SYNTH_MEMORY_CAP_MB ?? '0');
const PAGE = 4096;

// Get the loop optimised during the cold start, not in the first invocation:
// the calibration was measured on optimised code.
for (let round = 0; round < 5; round++) spin(Math.max(1, Math.round(ITERS_PER_MS * 2)));

export async function handler(event: SyntheticEvent): Promise<{
  durationMs: number;
  touchedMb: number;
  checksum: number;
}> {
  const start = performance.now();
  const requestedMs = Math.max(0, Number(event?.durationMs ?? 0));
  const touchedMb = Math.max(0, Math.min(Number(event?.memoryMb ?? 0), MEMORY_CAP_MB));
  let checksum = touchMemory(touchedMb);
  const remainingMs = requestedMs - (performance.now() - start);
  if (remainingMs > 0) checksum ^= spin(Math.round(remainingMs * ITERS_PER_MS));
  return { durationMs: performance.now() - start, touchedMb, checksum };
}

/** Allocates and writes one byte per page, so the pages are really resident. */
function touchMemory(mb: number): number {
  if (mb < 1) return 0;
  const buffer = Buffer.allocUnsafe(Math.floor(mb * 1024 * 1024));
  for (let i = 0; i < buffer.length; i += PAGE) buffer[i] = i & 0xff;
  return buffer[buffer.length - 1];
}
