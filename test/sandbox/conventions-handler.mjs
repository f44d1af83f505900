// The handler every process-driver conformance sandbox runs. It follows the
// conventions of test/helpers/fake-driver.ts, so one suite pins both.
export async function handler(event, context) {
  const e = event !== null && typeof event === 'object' ? event : {};
  if (e.sleepMs) await new Promise((resolve) => setTimeout(resolve, e.sleepMs));
  if (e.spinMs) {
    // Until this much CPU time is used, not wall time: on a loaded machine the two differ.
    const cpuMs = () => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1000;
    };
    const end = cpuMs() + e.spinMs;
    while (cpuMs() < end);
  }
  if (e.crash) {
    console.error('boom');
    process.exit(3);
  }
  if (e.oom) {
    // Bounded, so a sandbox without a memory limit fails instead of eating the node.
    const held = [];
    for (let i = 0; i < 4 * context.memoryMb; i++) held.push(Buffer.alloc(1 << 20, 1));
    throw new Error(`allocated ${held.length} MB and survived`);
  }
  console.log(`handling ${context.invocationId}`);
  if (typeof e.fail === 'string') throw new Error(e.fail);
  return event;
}
