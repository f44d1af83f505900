import { once } from 'node:events';

/**
 * `npm run bench -- neighbours` attacker: one function, deployed once per
 * attack, that does what a hostile or careless function does to its node's
 * daemon. `flood` prints `mb` MB of 1 KB lines as fast as the daemon takes
 * them; `line` prints one `mb` MB line; `result` returns an `mb` MB string.
 */
interface AttackEvent {
  kind: 'flood' | 'line' | 'result' | 'warmup';
  mb: number;
}

/** Writes `text` to stdout, waiting while the pipe is full (so the flood is paced by the reader). */
async function print(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

export async function handler(event: AttackEvent): Promise<unknown> {
  const bytes = event.mb * 1024 * 1024;
  switch (event.kind) {
    case 'flood': {
      const block = ('x'.repeat(1023) + '\n').repeat(64);
      for (let written = 0; written < bytes; written += block.length) await print(block);
      return { printed: bytes };
    }
    case 'line':
      await print('y'.repeat(bytes) + '\n');
      return { printed: bytes };
    case 'result':
      return 'z'.repeat(bytes);
    default:
      return 'ready';
  }
}
