/**
 * The composition root: the one place that knows every concrete part. It
 * builds the sandbox driver with its isolation layers (sandbox, net, cgroup),
 * the store, the orchestrator and the HTTP API, and starts the node.
 */
export { startNode, type RunningNode } from './node.ts';
export { resolveApiToken, isLoopbackHost, TOKEN_FILE, type ApiToken } from './token.ts';
