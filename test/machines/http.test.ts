import t from 'tap';
import { SimulatedClock, createActor } from 'xstate';
import type { HttpResult } from '../../machines/common.js';
import { type HttpRequestOutput, retrying } from '../../machines/http.js';
import { manualPromise, sequence, settle } from '../helpers/machines.js';

function start(random: () => number = () => 0.5) {
  const clock = new SimulatedClock();
  const request = manualPromise<{ n: number }, HttpResult>();
  const actor = createActor(retrying(request.logic), { clock, input: { request: { n: 7 }, random, retry: { baseMs: 1000, maxMs: 4000 } } });
  let output: HttpRequestOutput | undefined;
  actor.subscribe({ complete: () => (output = actor.getSnapshot().output) });
  actor.start();
  const tick = async (ms: number) => {
    clock.increment(ms);
    await settle();
  };
  return { actor, request, tick, output: () => output };
}

t.test('2xx: done at once with the answer', async (t) => {
  const h = start();
  t.same(h.request.calls.map((c) => c.input), [{ n: 7 }], 'the request gets its input');
  h.request.calls[0].resolve({ status: 200, body: { device_id: 'd' } });
  await settle();
  t.same(h.output(), { outcome: 'ok', status: 200, body: { device_id: 'd' }, error: undefined, attempts: 1 });
});

t.test('4xx: refused at once, never retried', async (t) => {
  const h = start();
  h.request.calls[0].resolve({ status: 404, body: { status: 'no such device' } });
  await settle();
  t.match(h.output(), { outcome: 'refused', status: 404, body: { status: 'no such device' }, error: 'HTTP 404', attempts: 1 });
  await h.tick(3_600_000);
  t.equal(h.request.calls.length, 1);
});

t.test('5xx and no answer: retried with the shared backoff until it works', async (t) => {
  const h = start();
  h.request.calls[0].resolve({ status: 503 });
  await settle();
  await h.tick(999);
  t.equal(h.request.calls.length, 1);
  await h.tick(1);
  t.equal(h.request.calls.length, 2, 'after 1 s');
  h.request.calls[1].reject(new Error('connect ECONNREFUSED'));
  await settle();
  t.match(h.actor.getSnapshot().context, { error: 'connect ECONNREFUSED', retryMs: 2000 });
  await h.tick(2000);
  h.request.calls[2].resolve({ status: 500 });
  await settle();
  await h.tick(4000);
  h.request.calls[3].resolve({ status: 502 });
  await settle();
  await h.tick(3999);
  t.equal(h.request.calls.length, 4);
  await h.tick(1);
  t.equal(h.request.calls.length, 5, 'capped at maxMs');
  h.request.calls[4].resolve({ status: 201, body: [] });
  await settle();
  t.match(h.output(), { outcome: 'ok', status: 201, attempts: 5 });
});

t.test('jitter comes from the injected source', async (t) => {
  const h = start(sequence(0, 0.999999));
  h.request.calls[0].reject(new Error('x'));
  await settle();
  t.equal(h.actor.getSnapshot().context.retryMs, 800);
  await h.tick(800);
  h.request.calls[1].reject(new Error('x'));
  await settle();
  t.equal(h.actor.getSnapshot().context.retryMs, 2400);
});

t.test('CANCEL ends a retry wait at once; a request in flight still decides when the server acted on it', async (t) => {
  const a = start();
  a.request.calls[0].resolve({ status: 503 });
  await settle();
  a.actor.send({ type: 'CANCEL' });
  t.match(a.output(), { outcome: 'cancelled', status: 503, error: 'HTTP 503' });

  const b = start();
  b.actor.send({ type: 'CANCEL' });
  b.request.calls[0].resolve({ status: 200 });
  await settle();
  t.match(b.output(), { outcome: 'ok' }, 'the server took it: that counts');

  const c = start();
  c.actor.send({ type: 'CANCEL' });
  c.request.calls[0].resolve({ status: 400 });
  await settle();
  t.match(c.output(), { outcome: 'refused' });

  const d = start();
  d.actor.send({ type: 'CANCEL' });
  d.request.calls[0].reject(new Error('socket hang up'));
  await settle();
  t.match(d.output(), { outcome: 'cancelled', error: 'socket hang up' });
  await d.tick(60_000);
  t.equal(d.request.calls.length, 1, 'not retried');
});
