import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { quantileSorted } from 'simple-statistics';

/** The flags every benchmark takes, plus its own. */
export function benchArgs<
  T extends Record<string, { type: 'string' | 'boolean'; default?: string | boolean }>,
>(argv: string[], own: T) {
  return parseArgs({
    args: argv,
    options: { json: { type: 'string' }, ...own },
    allowPositionals: false,
    strict: true,
  }).values;
}

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
}

/** n = 0 gives NaN figures (a measurement that yielded none is reported as missing, not a crash). */
export function summarize(samples: number[]): Summary {
  if (samples.length === 0) return { n: 0, p50: NaN, p99: NaN, mean: NaN };
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return {
    n: sorted.length,
    p50: quantileSorted(sorted, 0.5),
    p99: quantileSorted(sorted, 0.99),
    mean,
  };
}

/** Facts a reader needs to judge a figure from this machine. */
export function machineFacts(): Record<string, unknown> {
  return {
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    at: new Date().toISOString(),
  };
}

export async function writeJson(file: string | undefined, data: unknown): Promise<void> {
  if (!file) return;
  await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await fs.writeFile(file, JSON.stringify(data, null, 2) + '\n');
  console.log(`wrote ${file}`);
}

export function ratio(value: number, baseline: number): number {
  return Math.round((value / baseline) * 1000) / 1000;
}
