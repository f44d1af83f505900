import type { Command } from 'commander';

/** Verbs of the workload toolkit: trace, load, report, sweep. */
export function registerWorkloadCommands(_program: Command): void {}
