/** Parts of `bench net --f2f` (../f2f.ts): probe, native baseline, Petri node, CPU mirror, (d), charts. */
export { ask, waitForProbe, IperfAnswer, RttAnswer, TtfbAnswer, PROBE_DIR } from './probe.ts';
export { nativeStar, MAX_SENDERS, type NativeStar } from './native.ts';
export { petriNode, type PetriNode } from './petri.ts';
export { cpuLimitsIn, cpuMirrorGroup, describeLimits, pidsIn, type CpuLimits } from './cpu.ts';
export { fanIn, type FanSender, type FanSample } from './fan.ts';
export { traceRx, rateOver, sharedWindow, type RxSample, type Window } from './counter.ts';
export { writeF2fCharts, type ChartInput } from './charts.ts';
