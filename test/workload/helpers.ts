import type { TraceFunction } from '../../src/workload/index.ts';

/** A trace function with flat duration and memory, for hand-made traces. */
export function flatFunction(
  i: number,
  counts: number[],
  durationMs = 5,
  memoryMb = 128,
): TraceFunction {
  const d = durationMs;
  const m = memoryMb;
  return {
    owner: 'owner',
    app: `app${i}`,
    func: `func${i}`,
    trigger: 'http',
    counts: Uint32Array.from(counts),
    duration: {
      average: d,
      count: 1,
      minimum: d,
      maximum: d,
      p0: d,
      p1: d,
      p25: d,
      p50: d,
      p75: d,
      p99: d,
      p100: d,
    },
    memory: {
      sampleCount: 1,
      average: m,
      p1: m,
      p5: m,
      p25: m,
      p50: m,
      p75: m,
      p95: m,
      p99: m,
      p100: m,
    },
  };
}
