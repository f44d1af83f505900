import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/node/index.ts';
import { OUTPUT_TRAIL_MS } from '../../src/node/instance.ts';
import { droppedLine, LOG_LINE_OVERHEAD_BYTES, LogKeeper } from '../../src/node/logs.ts';
import { Store, type InvocationRecord } from '../../src/store/index.ts';

const source = { functionName: 'f', version: 1, instanceId: 'f-1-abc' };

function record(id: string): InvocationRecord {
  return { id, functionName: 'f', version: 1, mode: 'sync', status: 'succeeded', receivedAt: 0 };
}

function setup(invocationBytes: number) {
  const store = Store.open(':memory:');
  const clock = new ManualClock(1_000);
  const keeper = new LogKeeper(store, { invocationBytes }, clock);
  const lines = (invocationId?: string) =>
    store
      .listLogs({ functionName: 'f', invocationId, limit: 10_000 })
      .filter((log) => log.invocationId === invocationId)
      .map((log) => [log.stream, log.line]);
  return { store, clock, keeper, lines };
}

describe('the per-invocation log cap', () => {
  it('keeps lines up to the cap, counts the rest, and says so in a last line and the record', () => {
    const { store, clock, keeper, lines } = setup(10 * (100 + LOG_LINE_OVERHEAD_BYTES));
    for (let i = 0; i < 25; i++) keeper.line(source, 'stdout', 'x'.repeat(100), 'inv-1');
    keeper.line(source, 'stderr', 'short', 'inv-1'); // past the cap, however short
    const finished = record('inv-1');
    keeper.finishInvocation(finished);
    assert.deepEqual(finished.logsDropped, { lines: 16, bytes: 15 * 100 + 5 });
    assert.equal(lines('inv-1').length, 10, 'the last line waits for output that may trail');
    // Output still trailing after the invocation ended counts against the same cap.
    keeper.line(source, 'stdout', 'late', 'inv-1');
    clock.advance(OUTPUT_TRAIL_MS);
    assert.deepEqual(finished.logsDropped, { lines: 17, bytes: 15 * 100 + 5 + 4 });
    assert.deepEqual(lines('inv-1').at(-1), ['stderr', droppedLine(17, 1509)]);
    assert.equal(lines('inv-1').length, 11);
    assert.deepEqual(store.getInvocation('inv-1')?.logsDropped, { lines: 17, bytes: 1509 });
    store.close();
  });

  it('leaves an invocation under its cap as it was', () => {
    const { store, clock, keeper, lines } = setup(1024 * 1024);
    keeper.line(source, 'stdout', 'hello', 'inv-2');
    const finished = record('inv-2');
    keeper.finishInvocation(finished);
    clock.advance(OUTPUT_TRAIL_MS);
    assert.equal(finished.logsDropped, undefined);
    assert.deepEqual(lines('inv-2'), [['stdout', 'hello']]);
    assert.equal(store.getInvocation('inv-2'), undefined, 'the record is not stored again');
    store.close();
  });

  it('caps lines no invocation can be named for per instance, again after each idle', () => {
    const { store, keeper, lines } = setup(3 * (1 + LOG_LINE_OVERHEAD_BYTES));
    for (let i = 0; i < 5; i++) keeper.line(source, 'stdout', String(i));
    keeper.resetInstance(source.instanceId);
    keeper.line(source, 'stdout', 'after idle');
    assert.deepEqual(lines(undefined), [
      ['stdout', '0'],
      ['stdout', '1'],
      ['stdout', '2'],
      ['stderr', droppedLine(2, 2)],
      ['stdout', 'after idle'],
    ]);
    store.close();
  });
});
