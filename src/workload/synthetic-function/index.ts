import { calibrateSpinCpu, cpuMs, spin } from './spin.ts';

/**
 * The synthetic function `petri load` deploys for every trace function: it
 * touches `event.memoryMb` of memory (capped to the function's memory minus
 * headroom for the runtime itself) and busy-loops for the rest of
 * `event.durationMs` of CPU time, using the calibration measured in CPU time
 * inside a sandbox on the node at deploy time (PETRI_SYNTH_ITERS_PER_MS,
 * iterations per CPU ms). Under a CPU quota the same work takes longer in
 * wall time: that stretch is what the slowdown measures. It returns both
 * its CPU time (the measured execution) and its wall time.
 * `{"calibrate": true}` instead returns the calibration of this sandbox.
 */
interface SyntheticEvent {
  durationMs?: number;
  memoryMb?: number;
  calibrate?: boolean;
}

const ITERS_PER_MS = Number(process.env.PETRI_SYNTH_ITERS_PER_MS ?? '100000');
const MEMORY_CAP_MB = Number(process.env.PETRI_SYNTH_MEMORY_CAP_MB ?? '0');
const PAGE = 4096;
/** Longest spin between two reads of the CPU clock (ms of CPU). */
const SLICE_MS = 5;

// Get the loop optimised during the cold start, not in the first invocation:
// the calibration was measured on optimised code.
for (let round = 0; round < 5; round++) spin(Math.max(1, Math.round(ITERS_PER_MS * 2)));

// The function's footprint is made resident once, during its start, and kept
// while the instance lives, as a real function's heap is: faulting pages in
// costs 2–5 µs each on a VM (a 200 MB touch took 100–570 ms of CPU, more than
// many trace invocations ask for), so a fresh buffer per invocation would
// make the touch, not the requested work, set the invocation's duration.
const footprint = Buffer.allocUnsafe(Math.floor(MEMORY_CAP_MB * 1024 * 1024));
touchMemory(MEMORY_CAP_MB);

export async function handler(
  event: SyntheticEvent,
): Promise<
  | { durationMs: number; cpuMs: number; wallMs: number; touchedMb: number; checksum: number }
  | { itersPerCpuMs: number }
> {
  if (event?.calibrate === true) return { itersPerCpuMs: calibrateSpinCpu() };
  const start = performance.now();
  const startCpu = cpuMs();
  const requestedMs = Math.max(0, Number(event?.durationMs ?? 0));
  const touchedMb = Math.max(0, Math.min(Number(event?.memoryMb ?? 0), MEMORY_CAP_MB));
  let checksum = touchMemory(touchedMb);
  // Closed loop on CPU time: spin in slices of at most SLICE_MS by the
  // calibration and re-read the CPU clock, so a calibration a few % off
  // shifts only the last slice, not the whole invocation.
  let used = cpuMs() - startCpu;
  while (used < requestedMs) {
    const sliceMs = Math.min(SLICE_MS, requestedMs - used);
    checksum ^= spin(Math.max(1, Math.round(sliceMs * ITERS_PER_MS)));
    used = cpuMs() - startCpu;
  }
  const wallMs = performance.now() - start;
  // durationMs is the measured execution (CPU time), what the request asked for.
  return { durationMs: used, cpuMs: used, wallMs, touchedMb, checksum };
}

/** Writes one byte per page of the first `mb` of the footprint, so those pages are in use. */
function touchMemory(mb: number): number {
  if (mb < 1) return 0;
  const end = Math.min(footprint.length, Math.floor(mb * 1024 * 1024));
  for (let i = 0; i < end; i += PAGE) footprint[i] = (footprint[i] + 1) & 0xff;
  return footprint[end - 1];
}
