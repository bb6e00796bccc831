/** State charts generated from the machine definitions, and the active states of a snapshot. */
import t from 'tap';
import { createMachine } from 'xstate';
import { connectionMachine, orderMachine, supervisorMachine, uploadMachine } from '../../machines/index.js';
import { activePaths, eventLabel, stateChart } from '../../src/live/state-chart.js';

t.test('every state of a machine gets an id, and the text declares each one once', async (t) => {
  for (const machine of [connectionMachine, supervisorMachine, uploadMachine, orderMachine]) {
    const chart = stateChart(machine);
    t.equal(chart.machine, machine.id);
    t.match(chart.text, /^stateDiagram-v2\n/);
    const ids = Object.values(chart.nodes);
    t.equal(new Set(ids).size, ids.length, `${machine.id}: ids are distinct`);
    for (const [path, id] of Object.entries(chart.nodes)) {
      if (path === '') continue;
      const declared = chart.text.match(new RegExp(`^\\s*state "[^"]*" as ${id}( \\{)?$`, 'gm')) ?? [];
      t.equal(declared.length, 1, `${machine.id}: ${path} declared once as ${id}`);
    }
  }
});

t.test("the connection machine's chart: nesting, parallel regions, transitions with their events", async (t) => {
  const chart = stateChart(connectionMachine);
  const id = (path: string) => chart.nodes[path]!;
  t.ok(id('session.authenticated.sending.active'), 'deep states are numbered by path');
  t.match(chart.text, new RegExp(`state "authenticated \\(parallel\\)" as ${id('session.authenticated')} \\{`));
  t.match(chart.text, /\n\s+--\n/, 'parallel regions separated');
  t.match(chart.text, new RegExp(`${id('disconnected')} --> ${id('session')} : CONNECT`));
  t.match(chart.text, new RegExp(`${id('session.connecting')} --> ${id('session.authenticated')} : SOCKET.OPEN`));
  t.match(chart.text, new RegExp(`${id('backoff')} --> ${id('session')} : after backoff`));
  t.match(chart.text, new RegExp(`${id('closed')} --> \\[\\*\\]`), 'the final state ends');
});

t.test('an edge that leaves a compound state is drawn from the compound, in the scope of both ends', async (t) => {
  const machine = createMachine({
    id: 'm',
    initial: 'a',
    states: { a: { initial: 'x', states: { x: { on: { OUT: '#m.b' } }, y: {} } }, b: { on: { BACK: 'a.y' } } },
  });
  const chart = stateChart(machine);
  const [a, x, b] = [chart.nodes.a, chart.nodes['a.x'], chart.nodes.b];
  t.match(chart.text, new RegExp(`\\n  ${a} --> ${b} : OUT`), 'x → b drawn as a → b at the top level');
  t.notMatch(chart.text, new RegExp(`${x} --> ${b}`));
  t.match(chart.text, new RegExp(`${b} --> ${a} : BACK`));
});

t.test('event labels and active paths', async (t) => {
  t.equal(eventLabel('xstate.after.pingIdle.connection.session.authenticated.sending.active'), 'after pingIdle');
  t.equal(eventLabel('xstate.done.actor.socket'), 'done(socket)');
  t.equal(eventLabel('xstate.error.actor.0.order.checking'), 'error');
  t.equal(eventLabel('SOCKET.OPEN'), 'SOCKET.OPEN');
  t.same(activePaths('idle'), ['idle']);
  t.same(activePaths({ session: { authenticated: { sending: 'active', receiving: 'listening' } } }), [
    'session',
    'session.authenticated',
    'session.authenticated.sending',
    'session.authenticated.sending.active',
    'session.authenticated.receiving',
    'session.authenticated.receiving.listening',
  ]);
});
