/**
 * Test and benchmark harness: a daemon spawned as a child process, inside a
 * network namespace made for the run. Never imported by production code.
 */
export { spawnDaemon, type Daemon, type DaemonOptions } from './daemon.ts';
export { canMakeTestbed, createTestbed, type Testbed } from './testbed.ts';
