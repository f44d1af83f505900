import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { InstanceState } from '../policy/index.ts';

export interface MetricsSource {
  queueLengths(): Map<string, number>;
  instanceCounts(): Record<InstanceState, number>;
  memoryInUseMb(): number;
}

/** The node's Prometheus metrics, in a registry of its own (one per node). */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly invocations: Counter<'function' | 'start' | 'outcome'>;
  readonly duration: Histogram<'function' | 'start'>;

  constructor(source: MetricsSource) {
    const registers = [this.registry];
    this.invocations = new Counter({
      name: 'petri_invocations_total',
      help: 'Invocations by function, start path and outcome (an error code or "success").',
      labelNames: ['function', 'start', 'outcome'],
      registers,
    });
    this.duration = new Histogram({
      name: 'petri_invocation_duration_seconds',
      help: 'Time from request received to result, by function and start path.',
      labelNames: ['function', 'start'],
      buckets: [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
      ],
      registers,
    });
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
      help: 'Live instances by state.',
      labelNames: ['state'],
      registers,
      collect() {
        for (const [state, count] of Object.entries(source.instanceCounts()))
          this.set({ state }, count);
      },
    });
    new Gauge({
      name: 'petri_memory_in_use_mb',
      help: "Sum of live and starting instances' memoryMb.",
      registers,
      collect() {
        this.set(source.memoryInUseMb());
      },
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
