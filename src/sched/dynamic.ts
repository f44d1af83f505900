/** What the dynamic allocator sees of a class. */
export interface ClassDemand {
  name: string;
  vcpu: number;
  cores: readonly number[];
  running: number;
  queued: number;
}

export interface CoreMove {
  core: number;
  from: string;
  to: string;
}

/**
 * The greedy step of dynamic allocation: demand is (queued + running
 * microtasks) × the class's share; each class's fair number of cores is the
 * node's cores in proportion to demand. One core moves from the class most
 * above its fair number to the one most below, when that one has work
 * waiting, both are at least half a core off, and the donor keeps a core if
 * it has any work and the cores its running microtasks' shares add up to
 * (a move never puts more running microtasks on a class than its cores
 * hold: the reservation stays honest; they wait to end instead). A class
 * with work waiting and no core gets one from any class that can spare it.
 * Undefined: nothing worth moving.
 *
 * @example chooseMove([{name:'io',vcpu:0.25,cores:[0],running:0,queued:0},
 *   {name:'cpu',vcpu:1,cores:[1],running:1,queued:3}]) // {core:0, from:'io', to:'cpu'}
 */
export function chooseMove(classes: readonly ClassDemand[]): CoreMove | undefined {
  const total = classes.reduce((sum, c) => sum + c.cores.length, 0);
  const demand = classes.map((c) => (c.running + c.queued) * c.vcpu);
  const wanted = demand.reduce((a, b) => a + b, 0);
  if (wanted === 0 || total === 0) return undefined;
  // A class with work waiting and no core at all comes first: it cannot run until it gets one.
  const off = classes.map((c, i) =>
    c.cores.length === 0 && c.queued > 0
      ? -Infinity
      : c.cores.length - (total * demand[i]) / wanted,
  );
  let receiver = -1;
  let donor = -1;
  for (let i = 0; i < classes.length; i++) {
    if (classes[i].queued > 0 && (receiver < 0 || off[i] < off[receiver])) receiver = i;
  }
  for (let i = 0; i < classes.length; i++) {
    const c = classes[i];
    // A class keeps a core while it has work, and the cores its running microtasks hold.
    const keeps = Math.max(c.running + c.queued > 0 ? 1 : 0, Math.ceil(c.running * c.vcpu - 1e-9));
    if (i === receiver || c.cores.length <= keeps) continue;
    if (donor < 0 || off[i] > off[donor]) donor = i;
  }
  if (receiver < 0 || donor < 0 || off[receiver] > -0.5) return undefined;
  if (off[donor] < 0.5 && off[receiver] !== -Infinity) return undefined;
  const from = classes[donor];
  return { core: from.cores[from.cores.length - 1], from: from.name, to: classes[receiver].name };
}
