import { migration as core } from './001-core.ts';
import { migration as unfinishedIndex } from './002-unfinished-index.ts';
import { migration as logBounds } from './003-log-bounds.ts';
import { migration as autoscaleDecisions } from './004-autoscale-decisions.ts';

export interface Migration {
  version: number;
  name: string;
  up: string;
}

/** Every migration in order; a new one is a new numbered file added here. */
export const MIGRATIONS: Migration[] = [core, unfinishedIndex, logBounds, autoscaleDecisions];
