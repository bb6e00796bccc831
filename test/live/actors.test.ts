/** The inspection bridge: the current picture of every live machine actor, fed by XState's inspect option. */
import t from 'tap';
import { createActor, createMachine, fromPromise, setup } from 'xstate';
import { ActorBoard } from '../../src/live/actors.js';

const child = createMachine({ id: 'child', initial: 'idle', states: { idle: { on: { GO: 'busy' } }, busy: { on: { DONE: 'finished' } }, finished: { type: 'final' } } });
const parent = setup({ actors: { child, work: fromPromise(async () => 1) } }).createMachine({
  id: 'parent',
  type: 'parallel',
  states: {
    main: { invoke: { id: 'worker', src: 'child' }, on: { POKE: { actions: ({ self }) => self.getSnapshot().children.worker?.send({ type: 'GO' }) } } },
    side: { initial: 'a', states: { a: { on: { NEXT: 'b' } }, b: {} } },
  },
});

t.test('machine actors are shown with their charts, states and events; other actors are not', async (t) => {
  const board = new ActorBoard({ keepEndedMs: 0 });
  t.teardown(() => board.close());
  const changes: string[] = [];
  board.onChange((view, removed) => changes.push(`${view.name}${removed ? ' removed' : ''}`));
  const actor = createActor(parent, { inspect: board.inspector('dev-1') }).start();
  t.teardown(() => actor.stop());
  actor.send({ type: 'NEXT' });
  actor.send({ type: 'POKE' });

  const views = board.list();
  t.same(views.map((v) => [v.deviceId, v.name, v.machine]), [
    ['dev-1', 'parent', 'parent'],
    ['dev-1', 'worker', 'child'],
  ]);
  const [root, worker] = views;
  t.same(root!.active, ['main', 'side', 'side.b']);
  t.same(worker!.active, ['busy']);
  t.equal(worker!.parent, root!.sessionId);
  t.same(root!.events.map((e) => e.type), ['xstate.init', 'NEXT', 'POKE']);
  t.same(worker!.events.map((e) => e.type).slice(-1), ['GO']);
  t.equal(worker!.events.at(-1)!.from, undefined, 'sent by the parent on behalf of itself, not another actor');
  t.same(board.chartList().map((c) => c.machine).sort(), ['child', 'parent']);
  // XState's own events in a few words, and the sender named by its machine.
  const done = createActor(setup({ actors: { work: fromPromise(async () => 1) } }).createMachine({ id: 'job', initial: 'run', states: { run: { invoke: { src: 'work', onDone: 'ok' } }, ok: {} } }), { inspect: board.inspector('dev-1') }).start();
  await new Promise<void>((resolve) => done.subscribe((s) => s.matches('ok') && resolve()));
  const job = board.list().find((v) => v.name === 'job')!;
  t.same(job.events.map((e) => [e.type, e.from]), [['xstate.init', undefined], ['done(run)', 'run']]);
  t.ok(changes.includes('worker'));
});

t.test('an order actor that ends is marked, kept a while, then swept; a throwing listener disturbs neither board nor machine', async (t) => {
  const order = createMachine({ ...child.config, id: 'order' });
  const board = new ActorBoard({ keepEndedMs: 1000 });
  t.teardown(() => board.close());
  board.onChange(() => {
    throw new Error('a broken page');
  });
  const removed: string[] = [];
  board.onChange((view, gone) => gone && removed.push(view.name));
  const actor = createActor(order, { inspect: board.inspector('dev-2') }).start();
  actor.send({ type: 'GO' });
  actor.send({ type: 'DONE' });
  t.equal(actor.getSnapshot().status, 'done', 'the machine ran to its end');
  const [view] = board.list();
  t.equal(view!.status, 'done');
  t.same(view!.active, ['finished']);
  board.sweep(view!.endedAt! + 500);
  t.same(removed, [], 'kept a while after it ended');
  board.sweep(view!.endedAt! + 1500);
  t.same(removed, ['order'], 'then dropped');
  t.same(board.list(), []);
});

t.test('a child stopped by its parent is marked stopped and dropped at once (not an order)', async (t) => {
  const board = new ActorBoard();
  t.teardown(() => board.close());
  const machine = createMachine({ id: 'p', initial: 'on', states: { on: { invoke: { id: 'kid', src: child }, on: { OFF: 'off' } }, off: {} } });
  const actor = createActor(machine, { inspect: board.inspector('dev-3') }).start();
  t.teardown(() => actor.stop());
  t.same(board.list().map((v) => v.name), ['p', 'kid']);
  actor.send({ type: 'OFF' });
  board.sweep();
  board.sweep();
  t.same(board.list().map((v) => v.name), ['p'], 'the stopped child is gone');
});
