/**
 * `petri sim`: trace-driven simulation of keep-alive policies through the
 * live Pool, Instance and policy code on a simulated clock.
 */
export { CpuShare } from './cpu-share.ts';
export { SimDriver } from './driver.ts';
export { type ColdStartStats, coldStartStats, relativeDifference } from './metrics.ts';
export { type IsolatedSimOptions, simulateIsolated } from './isolated.ts';
export { type FunctionResult, type PolicyResult, type SimOptions, simulate } from './simulate.ts';
export { formatSimResults, simSummary, tradeOffChart, writeSimResults } from './report.ts';
export {
  type PolicyFigures,
  coldOf,
  comparisonChart,
  formatPolicyComparison,
  liveFigures,
  policyFigures,
  writePolicyComparison,
} from './figures.ts';
