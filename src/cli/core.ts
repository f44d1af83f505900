import type { Command } from 'commander';

/** Verbs that speak the node API: serve, deploy, invoke, ls, get, rm, logs, invocations, status. */
export function registerCoreCommands(_program: Command): void {}
