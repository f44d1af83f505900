import { Gauge, Registry, type Metric } from 'prom-client';
import type { AutoscaleDecision, InstanceState } from '../policy/index.ts';

export interface MetricsSource {
  queueLengths(): Map<string, number>;
  instanceCounts(): Record<InstanceState, number>;
  memoryInUseMb(): number;
  /** 'pack' or 'spread' while CPU placement is active; undefined when it is off. */
  placement(): string | undefined;
  /** The last autoscaler decision per autoscaled function (none for on-demand ones). */
  autoscaleDecisions?(): ReadonlyMap<string, AutoscaleDecision>;
  /** Running function groups and their members by state (members are not pool instances). */
  groupMembers?(): { groups: number; members: Record<string, number> };
  /** Prewarmed runtimes per configured size: ready and starting (node config `prewarm`). */
  prewarms?(): readonly { memoryMb: number; egress: boolean; ready: number; starting: number }[];
}

const MIB = 1024 * 1024;

const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

interface Series {
  labels: { function: string; start: string };
  /** Invocations by outcome. */
  outcomes: Map<string, number>;
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * The node's Prometheus metrics, in a registry of its own (one per node).
 * Invocations are counted in plain maps, one lookup per invocation, and
 * turned into Prometheus series only when scraped: prom-client's own
 * observe() validates and hashes labels on every call, which showed in the
 * invoke benchmark's profile.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  private readonly series = new Map<string, Series>();

  constructor(source: MetricsSource) {
    const registers = [this.registry];
    this.registry.registerMetric(this.invocationsMetric());
    this.registry.registerMetric(this.durationMetric());
    new Gauge({
      name: 'petri_queue_length',
      help: 'Invocations waiting for an instance, by function.',
      labelNames: ['function'],
      registers,
      collect() {
        this.reset();
        for (const [name, length] of source.queueLengths()) this.set({ function: name }, length);
      },
    });
    new Gauge({
      name: 'petri_instances',
      help: 'Invocable (pool) instances by state: starting, idle, paused, busy or stopping; group members are petri_group_members.',
      labelNames: ['state'],
      registers,
      collect() {
        // A dead instance is forgotten at once, so it is never a state to watch.
        const { dead: _dead, ...live } = source.instanceCounts();
        for (const [state, count] of Object.entries(live)) this.set({ state }, count);
      },
    });
    new Gauge({
      name: 'petri_memory_in_use_bytes',
      help: 'Memory the node has given to starting and live instances (their memoryMb), in bytes.',
      registers,
      collect() {
        this.set(source.memoryInUseMb() * MIB);
      },
    });
    new Gauge({
      name: 'petri_cpu_placement',
      help: 'CPU placement now: 1 for the current state (pack or spread); no series when placement is off.',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        const current = source.placement();
        if (current === undefined) return;
        for (const state of ['pack', 'spread']) this.set({ state }, state === current ? 1 : 0);
      },
    });
    new Gauge({
      name: 'petri_prewarm_runtimes',
      help: 'Prewarmed generic runtimes (no function yet) by memory size, egress and state (ready or starting); each holds its memoryMb of the budget.',
      labelNames: ['memory_mb', 'egress', 'state'],
      registers,
      collect() {
        this.reset();
        for (const set of source.prewarms?.() ?? []) {
          const labels = { memory_mb: String(set.memoryMb), egress: String(set.egress) };
          this.set({ ...labels, state: 'ready' }, set.ready);
          this.set({ ...labels, state: 'starting' }, set.starting);
        }
      },
    });
    this.autoscaleGauges(source);
    this.groupGauges(source);
  }

  /** Function groups and their members (service instances outside the pool). */
  private groupGauges(source: MetricsSource): void {
    const groupMembers = source.groupMembers?.bind(source);
    if (!groupMembers) return;
    const registers = [this.registry];
    new Gauge({
      name: 'petri_groups',
      help: 'Function groups running.',
      registers,
      collect() {
        this.set(groupMembers().groups);
      },
    });
    new Gauge({
      name: 'petri_group_members',
      help: 'Group members (service instances) by state: starting, waiting, running, exited or stopping.',
      labelNames: ['state'],
      registers,
      collect() {
        for (const [state, count] of Object.entries(groupMembers().members)) {
          this.set({ state }, count);
        }
      },
    });
  }

  /** One series per autoscaled function and policy, from its last decision. */
  private autoscaleGauges(source: MetricsSource): void {
    const registers = [this.registry];
    const gauge = (
      name: string,
      help: string,
      value: (d: AutoscaleDecision) => number,
      windowed = false,
    ): void => {
      new Gauge({
        name,
        help,
        labelNames: windowed ? ['function', 'policy', 'window'] : ['function', 'policy'],
        registers,
        collect() {
          this.reset();
          for (const [fn, d] of source.autoscaleDecisions?.() ?? []) {
            if (!windowed) this.set({ function: fn, policy: d.policy }, value(d));
            else {
              this.set({ function: fn, policy: d.policy, window: 'stable' }, d.observedStable);
              this.set({ function: fn, policy: d.policy, window: 'panic' }, d.observedPanic);
            }
          }
        },
      });
    };
    gauge(
      'petri_autoscaler_desired_instances',
      'Instances the autoscaling policy last asked for, by function and policy (concurrency or rps).',
      (d) => d.desired,
    );
    gauge(
      'petri_autoscaler_actual_instances',
      'Live instances of the current version (starting included) at the last autoscaler decision.',
      (d) => d.actual,
    );
    gauge(
      'petri_autoscaler_panic',
      "1 while the function's autoscaler is in panic mode, else 0.",
      (d) => (d.panic ? 1 : 0),
    );
    gauge(
      'petri_autoscaler_observed',
      "The autoscaler's metric over its stable and panic windows: invocations in flight (concurrency) or per second (rps).",
      () => 0,
      true,
    );
  }

  /** Counts one finished invocation: its function, start path, outcome and duration. */
  record(functionName: string, start: string, outcome: string, seconds: number): void {
    const key = `${functionName}\u0000${start}`;
    let series = this.series.get(key);
    if (!series) {
      series = {
        labels: { function: functionName, start },
        outcomes: new Map(),
        buckets: new Float64Array(DURATION_BUCKETS.length),
        sum: 0,
        count: 0,
      };
      this.series.set(key, series);
    }
    series.outcomes.set(outcome, (series.outcomes.get(outcome) ?? 0) + 1);
    // A plain loop: a findIndex callback is a closure per invocation (and a defineProperty under tsx).
    let bucket = 0;
    while (bucket < DURATION_BUCKETS.length && !(seconds <= DURATION_BUCKETS[bucket])) bucket++;
    if (bucket < DURATION_BUCKETS.length) series.buckets[bucket] += 1;
    series.sum += seconds;
    series.count += 1;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private invocationsMetric(): Metric {
    const name = 'petri_invocations_total';
    return this.customMetric(
      name,
      'counter',
      'Finished invocations by function, start path (warm, paused, restore, cold or unserved) and outcome (success or an error code).',
      () =>
        [...this.series.values()].flatMap((series) =>
          [...series.outcomes].map(([outcome, value]) => ({
            labels: { ...series.labels, outcome },
            value,
          })),
        ),
    );
  }

  private durationMetric(): Metric {
    const name = 'petri_invocation_duration_seconds';
    return this.customMetric(
      name,
      'histogram',
      'Time from request received to result, by function and start path (warm, paused, restore, cold or unserved).',
      () =>
        [...this.series.values()].flatMap((series) => {
          let cumulative = 0;
          const buckets = DURATION_BUCKETS.map((le, i) => {
            cumulative += series.buckets[i];
            return {
              metricName: `${name}_bucket`,
              labels: { ...series.labels, le },
              value: cumulative,
            };
          });
          return [
            ...buckets,
            {
              metricName: `${name}_bucket`,
              labels: { ...series.labels, le: '+Inf' },
              value: series.count,
            },
            { metricName: `${name}_sum`, labels: series.labels, value: series.sum },
            { metricName: `${name}_count`, labels: series.labels, value: series.count },
          ];
        }),
    );
  }

  /** A metric the registry reads through `get()`, built from our own counts at scrape time. */
  private customMetric(
    name: string,
    type: 'counter' | 'histogram',
    help: string,
    values: () => { metricName?: string; labels: Record<string, string | number>; value: number }[],
  ): Metric {
    const metric = {
      name,
      help,
      type,
      aggregator: 'sum',
      get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
      reset: () => this.series.clear(),
    };
    return metric as unknown as Metric;
  }
}
