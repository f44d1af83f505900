/**
 * The instance host script: the node bundles this file into one small ESM
 * script at start (buildHost) and every cold instance runs it.
 *
 * Only Node built-ins may be imported here.
 */
import { fileURLToPath } from 'node:url';
import { runHost } from './host-core.ts';

runHost({ hostFile: fileURLToPath(import.meta.url) });
