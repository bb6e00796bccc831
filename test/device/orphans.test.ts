/** A machine that fails releases what it invoked (statelyai/xstate#5153 worked around). */
import t from 'tap';
import { createActor, fromCallback, setup } from 'xstate';
import { stopChildrenOf, stopOrphansOf } from '../../src/device/orphans.js';

/** A child machine holding a resource (like the connection machine's socket) and an action that throws. */
function rig() {
  const released: string[] = [];
  const holder = (name: string) => fromCallback(() => () => void released.push(name));
  const child = setup({
    actors: { socket: holder('socket') },
    actions: {
      boom: () => {
        throw new Error('boom');
      },
    },
  }).createMachine({ invoke: { src: 'socket' }, on: { BOOM: { actions: 'boom' } } });
  const parent = setup({ actors: { child, side: holder('side') } }).createMachine({
    initial: 'running',
    invoke: { src: 'side' },
    states: { running: { invoke: { id: 'child', src: 'child', onError: 'faulted' } }, faulted: {} },
    on: { BOOM: { actions: () => { throw new Error('root boom'); } } },
  });
  return { released, parent };
}

t.test('xstate itself still leaves a failed child machine socket open (when this fails, the workaround can go)', async (t) => {
  const { released, parent } = rig();
  const actor = createActor(parent).start();
  (actor.getSnapshot().children as Record<string, { send: (e: { type: string }) => void }>).child.send({ type: 'BOOM' });
  t.same(actor.getSnapshot().value, 'faulted');
  t.same(released, [], 'xstate left the socket open');
  actor.stop();
});

t.test('a failed child machine releases its socket; the parent goes on', async (t) => {
  const { released, parent } = rig();
  const actor = createActor(parent, { inspect: stopOrphansOf }).start();
  (actor.getSnapshot().children as Record<string, { send: (e: { type: string }) => void }>).child.send({ type: 'BOOM' });
  t.same(actor.getSnapshot().value, 'faulted');
  t.same(released, ['socket']);
  t.equal(actor.getSnapshot().status, 'active');
  actor.stop();
  t.same(released.sort(), ['side', 'socket']);
});

t.test('a failed root machine releases everything it invoked', async (t) => {
  const { released, parent } = rig();
  const actor = createActor(parent, { inspect: stopOrphansOf });
  actor.subscribe({ error: () => stopChildrenOf(actor) });
  actor.start();
  actor.send({ type: 'BOOM' });
  t.equal(actor.getSnapshot().status, 'error');
  t.same(released.sort(), ['side', 'socket'], 'the child machine stopped its own socket too');
});
