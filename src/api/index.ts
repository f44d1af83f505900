export { buildApp, type AppOptions } from './app.ts';
export { startNode, type RunningNode } from './server.ts';
export { toInvocationView, type InvocationView } from './views.ts';
export { spawnDaemon, type Daemon, type DaemonOptions } from './daemon.ts';
