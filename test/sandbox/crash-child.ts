/**
 * NOT a test file: a driver that crashes. Run as
 * `node --import tsx crash-child.ts <subject module> <export> <key>`; it
 * starts two sandboxes of the subject's driver (one mid-invocation), prints
 * `READY [ids]` and waits to be killed with SIGKILL, so nothing of its
 * clean-up runs (see process-subjects.ts crashInChild).
 */
import { pathToFileURL } from 'node:url';
import type { DriverSubject } from './driver.case.ts';

const [moduleFile = '', exportName = '', key = ''] = process.argv.slice(2);
const loaded = (await import(pathToFileURL(moduleFile).href)) as Record<
  string,
  DriverSubject | undefined
>;
const subject = loaded[exportName];
if (!subject) throw new Error(`${moduleFile} exports no subject "${exportName}"`);
await subject.setup?.();
const driver = await subject.make(key);
await driver.reconcile();
const ids = [`${key}-crashed-1`, `${key}-crashed-2`];
for (const id of ids) {
  const sandbox = await driver.create(subject.spec(key, id));
  await new Promise<void>((resolve, reject) => {
    sandbox.on('message', (message) => {
      if (message.type === 'ready') resolve();
    });
    sandbox.on('exit', (exit) => reject(new Error(`${id} exited: ${exit.stderrTail}`)));
  });
  if (id === ids[0]) {
    sandbox.send({ type: 'invoke', id: 'in-flight', event: { sleepMs: 60_000 }, deadline: 0 });
  }
}
console.log(`READY ${JSON.stringify(ids)}`);
setInterval(() => undefined, 60_000);
