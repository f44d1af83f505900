export { buildApp, type AppOptions } from './app.ts';
export { toInvocationView, type InvocationView } from './views.ts';
