import { migration as core } from './001-core.ts';
import { migration as unfinishedIndex } from './002-unfinished-index.ts';
import { migration as logBounds } from './003-log-bounds.ts';
import { migration as httpRequest } from './004-http-request.ts';
import { migration as aliases } from './005-aliases.ts';
import { migration as microtasks } from './006-microtasks.ts';
import { migration as autoscaleDecisions } from './007-autoscale-decisions.ts';

export interface Migration {
  version: number;
  name: string;
  up: string;
}

/** Every migration in order; a new one is a new numbered file added here. */
export const MIGRATIONS: Migration[] = [
  core,
  unfinishedIndex,
  logBounds,
  httpRequest,
  aliases,
  microtasks,
  autoscaleDecisions,
];
