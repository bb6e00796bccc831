/**
 * The bookkeeping of the fault-injection tests: a workload of uniquely identifiable orders and
 * values, and the check of the invariant after a scenario —
 *  - every enqueued order was executed at least once, acknowledged (confirmed) exactly once, and
 *    executed at most once;
 *  - every value the device accepted (push resolved) is stored on the server exactly once;
 *  - nothing in limbo: no order queued or in flight on the server, the device's spool empty.
 */
import type { Section } from '../../src/protocol/index.js';
import type { Store } from '../../src/server/store/index.js';

/** Order n: even → write X<n> = n, odd → read R<n> (the handler returns n, stored as a reading). */
export function orderSections(n: number): Section[] {
  const order = n % 2 === 0 ? { type: 'write' as const, path: `X${n}`, value: n } : { type: 'read' as const, path: `R${n}` };
  return [{ orders: [order], disposition: 0 }];
}

/** Handlers that log every execution as its path ("X4", "R7"). */
export function countingHandlers(log: (path: string) => void) {
  return {
    onWrite: (path: string) => log(path),
    onRead: (path: string) => {
      log(path);
      return Number(path.slice(1));
    },
  };
}

export interface Outcome {
  orders: number;
  values: number;
  /** Orders not confirmed, never executed, or values accepted but not stored. */
  lost: string[];
  /** Orders executed more than once, values stored more than once. */
  duplicated: string[];
  /** Orders queued/in-flight on the server, values still in the device's spool. */
  limbo: string[];
}

export interface Expectation {
  store: Store;
  deviceId: string;
  /** n → order id, for every enqueued order. */
  orders: Map<number, string>;
  /** Paths in execution order ("X4", "R7"), over all runs of the device. */
  executions: string[];
  /** Every value pushed and accepted, as `${path}=${value}`; the pushes use unique pairs. */
  accepted: string[];
  /** Values whose push() was started but may not have resolved (the process was killed): stored at most once. */
  attempted?: string[];
  /** Values the device still holds (status().values.pending), when known. */
  spoolPending?: number;
}

export async function check(e: Expectation): Promise<Outcome> {
  const out: Outcome = { orders: e.orders.size, values: e.accepted.length, lost: [], duplicated: [], limbo: [] };
  const executed = new Map<string, number>();
  for (const p of e.executions) executed.set(p, (executed.get(p) ?? 0) + 1);
  const expectedValues = new Set(e.accepted);
  for (const [n, id] of e.orders) {
    const path = n % 2 === 0 ? `X${n}` : `R${n}`;
    const record = await e.store.getOrder(id);
    const runs = executed.get(path) ?? 0;
    if (record?.state !== 'confirmed') (record?.state === 'queued' || record?.state === 'in-flight' ? out.limbo : out.lost).push(`order ${n} ${record?.state}`);
    if (runs === 0) out.lost.push(`order ${n} never executed`);
    if (runs > 1) out.duplicated.push(`order ${n} executed ${runs} times`);
    if (path.startsWith('R') && runs > 0) expectedValues.add(`${path}=${n}`);
  }
  for (const state of ['queued', 'in-flight'] as const) {
    for (const o of await e.store.listOrders(e.deviceId, { state, limit: 1000 })) out.limbo.push(`order ${o.id} ${state}`);
  }
  const stored = new Map<string, number>();
  for (const s of await e.store.readData(e.deviceId, { limit: 10_000_000 })) {
    for (const v of s.values) {
      const key = `${s.path}=${String(v[1])}`;
      stored.set(key, (stored.get(key) ?? 0) + 1);
    }
  }
  for (const key of expectedValues) {
    const n = stored.get(key) ?? 0;
    // A read order executed twice legitimately stores two readings: that is counted once, above.
    const runs = key.startsWith('R') ? (executed.get(key.split('=')[0]) ?? 1) : 1;
    if (n === 0) out.lost.push(`value ${key}`);
    else if (n > runs) out.duplicated.push(`value ${key} stored ${n} times`);
  }
  const attempted = new Set(e.attempted ?? []);
  for (const [key, n] of stored) {
    if (expectedValues.has(key)) continue;
    if (!attempted.has(key)) out.duplicated.push(`value ${key} stored but never pushed`);
    else if (n > 1) out.duplicated.push(`value ${key} (push cut short) stored ${n} times`);
  }
  if (e.spoolPending) out.limbo.push(`${e.spoolPending} values in the device spool`);
  return out;
}

/** The one-line summary the fault tests print (collected into docs/reliability.md). */
export function summary(name: string, o: Outcome, extra: Record<string, number> = {}): string {
  const parts = Object.entries(extra).map(([k, v]) => `${v} ${k}`);
  return `reliability: ${name}: ${[...parts, `${o.orders} orders`, `${o.values} values`, `lost ${o.lost.length}`, `duplicated ${o.duplicated.length}`, `limbo ${o.limbo.length}`].join(', ')}`;
}
