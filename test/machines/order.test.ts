import t from 'tap';
import { createActor, fromPromise } from 'xstate';
import { type OrderDoneReport, type OrderInput, type OrderReport, type OrderOutcome, orderIdOf, orderMachine, type ExecuteInput } from '../../machines/order.js';
import { manualPromise, settle } from '../helpers/machines.js';

const sections = (id?: string) => [{ ...(id ? { id } : {}), orders: [{ type: 'write', path: 'W1', value: 5 }], disposition: 0 }];

function start(input: Partial<OrderInput>, seen: Record<string, OrderOutcome> = {}) {
  const trace: string[] = [];
  const reports: OrderDoneReport[] = [];
  const execute = manualPromise<ExecuteInput, void>();
  const m = orderMachine.provide({
    actors: {
      checkExecuted: fromLookup(seen, trace),
      execute: execute.logic,
      recordOutcome: fromRecord(seen, trace),
    },
    actions: {
      report: (_, params) => {
        if (params.type === 'ORDER.EXECUTING') return void trace.push('report executing');
        trace.push(`report ${params.outcome}`);
        reports.push(params);
      },
    },
  });
  const actor = createActor(m, { input: { key: 'o1', via: 'ngtt', tid: 3, epoch: 1, payload: sections('A'), ...input } });
  const states: string[] = [];
  actor.subscribe((s) => {
    if (states.at(-1) !== s.value) states.push(s.value as string);
  });
  actor.start();
  return { actor, trace, reports, execute, states };
}

function fromLookup(seen: Record<string, OrderOutcome>, trace: string[]) {
  return fromPromise<OrderOutcome | null, { id: string }>(async ({ input }) => {
    trace.push(`check ${input.id}`);
    return seen[input.id] ?? null;
  });
}
function fromRecord(seen: Record<string, OrderOutcome>, trace: string[]) {
  return fromPromise<void, { id: string; outcome: OrderOutcome }>(async ({ input }) => {
    trace.push(`record ${input.id} ${input.outcome}`);
    seen[input.id] = input.outcome;
  });
}

t.test('received → checking → executing → recording → acked; recorded before the ack', async (t) => {
  const o = start({});
  await settle();
  t.equal(o.actor.getSnapshot().value, 'executing');
  t.same(o.execute.calls.map((c) => c.input), [{ key: 'o1', id: 'A', sections: [{ orders: [{ type: 'write', path: 'W1', value: 5 }], disposition: 0 }], skipped: [] }]);
  o.execute.calls[0].resolve();
  await settle();
  t.same(o.states, ['checking', 'executing', 'recording', 'acked'], 'received and outcome are transient');
  t.same(o.trace, ['check A', 'report executing', 'record A acked', 'report acked']);
  t.same(o.reports, [{ type: 'ORDER.DONE', key: 'o1', id: 'A', via: 'ngtt', tid: 3, epoch: 1, outcome: 'acked', reason: undefined, executed: true }]);
  t.equal(o.actor.getSnapshot().status, 'done');
});

t.test('a failed execution is rejected with the reason, and recorded', async (t) => {
  const o = start({});
  await settle();
  o.execute.calls[0].reject(new Error('W1 is read-only'));
  await settle();
  t.equal(o.actor.getSnapshot().value, 'rejected');
  t.same(o.trace, ['check A', 'report executing', 'record A rejected', 'report rejected']);
  t.match(o.reports[0], { outcome: 'rejected', reason: 'W1 is read-only', tid: 3, executed: true });
});

t.test('a redelivered order already executed is acked without executing again', async (t) => {
  const o = start({}, { A: 'acked' });
  await settle();
  t.equal(o.actor.getSnapshot().value, 'acked');
  t.equal(o.execute.calls.length, 0, 'not executed');
  t.same(o.trace, ['check A', 'report acked']);
  t.match(o.reports[0], { outcome: 'acked', executed: false });

  const r = start({}, { A: 'rejected' });
  await settle();
  t.equal(r.actor.getSnapshot().value, 'rejected');
  t.equal(r.execute.calls.length, 0);
  t.match(r.reports[0], { outcome: 'rejected', executed: false });
});

t.test('the same order twice: executed once, the second one is acked from the record', async (t) => {
  const seen: Record<string, OrderOutcome> = {};
  const a = start({}, seen);
  await settle();
  a.execute.calls[0].resolve();
  await settle();
  const b = start({ tid: 9, epoch: 2 }, seen);
  await settle();
  t.equal(b.execute.calls.length, 0);
  t.match(b.reports[0], { outcome: 'acked', tid: 9, epoch: 2, executed: false });
});

t.test('an order without id skips the lookup and the record', async (t) => {
  const o = start({ payload: sections() });
  t.equal(o.actor.getSnapshot().value, 'executing');
  o.execute.calls[0].resolve();
  await settle();
  t.same(o.trace, ['report executing', 'report acked']);
});

t.test('a malformed payload is rejected at once', async (t) => {
  const o = start({ payload: { not: 'a list' } });
  t.equal(o.actor.getSnapshot().value, 'rejected');
  t.equal(o.execute.calls.length, 0);
  t.match(o.reports[0].reason, /^malformed order: \$: expected a list of sections/);
});

t.test('REDELIVERED while executing moves the ack to the new tid and epoch', async (t) => {
  const o = start({});
  await settle();
  o.actor.send({ type: 'REDELIVERED', tid: 12, epoch: 2 });
  o.execute.calls[0].resolve();
  await settle();
  t.match(o.reports[0], { tid: 12, epoch: 2, outcome: 'acked' });
});

t.test('a failing lookup still executes the order', async (t) => {
  const reports: OrderReport[] = [];
  let executed = 0;
  const actor = createActor(
    orderMachine.provide({
      actors: {
        checkExecuted: fromPromise<OrderOutcome | null, { id: string }>(async () => {
          throw new Error('disk');
        }),
        execute: fromPromise<void, ExecuteInput>(async () => void executed++),
        recordOutcome: fromPromise<void, { id: string; outcome: OrderOutcome }>(async () => {
          throw new Error('disk');
        }),
      },
      actions: { report: (_, p) => void reports.push(p) },
    }),
    { input: { key: 'k', via: 'https', payload: sections('B') } },
  );
  actor.start();
  await settle();
  t.equal(executed, 1);
  t.match(reports, [{ type: 'ORDER.EXECUTING', id: 'B' }, { outcome: 'acked', via: 'https', id: 'B' }], 'the ack is not held back by a failed record');
});

t.test('orderIdOf', async (t) => {
  t.equal(orderIdOf(sections('X')), 'X');
  t.equal(orderIdOf(sections()), undefined);
  t.equal(orderIdOf(42), undefined);
});
