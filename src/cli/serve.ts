import type { Command } from 'commander';

/** Placeholder: the lead writes `petri serve` here. */
export function registerServeCommand(_program: Command): void {}
