/**
 * The workload toolkit (In-Vitro): Azure trace ingestion and synthesis,
 * Wasserstein sampling into nested summaries, an open-loop load generator
 * with a synthetic function, and slowdown analysis and load sweeps.
 */
export * from './trace.ts';
export { Rng } from './rng.ts';
export { FILES as AZURE2019_FILES, writeTrace } from './azure2019.ts';
export {
  type PreprocessReport,
  type ReadOptions,
  type WindowStart,
  loadTrace,
  parseWindowStart,
  preprocess,
  readTraceWindow,
} from './preprocess.ts';
export { type SynthOptions, synthesize } from './synth.ts';
export { ReferenceDistribution, wasserstein1 } from './wasserstein.ts';
export {
  type SampleMethod,
  type SampleResult,
  type SamplerOptions,
  type WdScale,
  RESOURCE_NORMALISATION,
  scaleLabel,
  type WdScore,
  TraceScorer,
  sampleSizes,
  sampleTrace,
} from './sampler.ts';
export { writeSamples } from './sample-output.ts';
export {
  type IatDistribution,
  type Schedule,
  type ScheduleOptions,
  buildSchedule,
} from './schedule.ts';
export { type Clock, type DispatchOptions, dispatch, realClock } from './dispatcher.ts';
export { type PreciseClock, preciseClock } from './precise-clock.ts';
export {
  type InvocationOutcome,
  type InvocationRequest,
  type LoadTarget,
  HttpTarget,
  PetriTarget,
  START_PATHS,
  type StartPath,
  SYNTHETIC_FUNCTION_DIR,
  syntheticLimits,
} from './targets.ts';
export { type LoadOptions, runLoad } from './loadgen.ts';
export {
  type RunData,
  type RunMeta,
  RunMetaSchema,
  emptyRunData,
  readRun,
  writeRun,
} from './results.ts';
export {
  type RunAnalysis,
  analyseRun,
  formatAnalysis,
  percentiles,
  writeReport,
} from './analysis.ts';
export { type SweepOptions, type SweepPoint, listSampleSizes, runSweep } from './sweep.ts';
export {
  type PolicySweepOptions,
  type PolicySweepResult,
  comparisonRows,
  runPolicySweep,
  writePolicyComparison,
} from './policy-sweep.ts';
export { calibrateSpin, calibrateSpinCpu, spin } from './synthetic-function/spin.ts';
export { ConnectionGate } from './dispatcher.ts';
export { LATE_MS, OPEN_LOOP_MAX_LATE_SHARE } from './analysis.ts';
export { stopRule } from './sweep.ts';
