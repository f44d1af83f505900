// A TypeScript handler, bundled with esbuild at deploy time.
interface Event {
  numbers?: number[];
}

interface Context {
  functionName: string;
  remainingTimeMs(): number;
}

export async function handler(
  event: Event,
  context: Context,
): Promise<{ sum: number; by: string }> {
  const sum = (event.numbers ?? []).reduce((a, b) => a + b, 0);
  return { sum, by: context.functionName };
}
