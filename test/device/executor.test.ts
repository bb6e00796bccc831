import t from 'tap';
import { parseSections, type PathpointScalar, type PathpointValue, type Section } from '../../src/protocol/index.js';
import { OrderExecutor, PathpointError, type ExecutorOptions, type OrderHandlers } from '../../src/device/executor.js';
import { pathpointType, valueProblem } from '../../src/device/pathpoint-types.js';

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const NOW = 1_700_000_000_000;

function setup(handlers: Partial<OrderHandlers>, options: Partial<ExecutorOptions> = {}) {
  const readings: [string, PathpointValue][] = [];
  const sleeps: number[] = [];
  const warnings: string[] = [];
  const executor = new OrderExecutor({
    handlers: { onRead: () => 0, onWrite: () => {}, ...handlers },
    onReading: (path, value) => void readings.push([path, value]),
    sleep: async (ms) => void sleeps.push(ms),
    now: () => NOW,
    log: { warn: (_, message) => void warnings.push(message), debug() {} },
    ...options,
  });
  return { executor, readings, sleeps, warnings };
}

t.test('sections run one after another, orders of a section in parallel', async (t) => {
  const events: string[] = [];
  const pending = new Map<string, ReturnType<typeof deferred<PathpointScalar>>>();
  const { executor, readings } = setup({
    onRead: (path) => {
      events.push(`start ${path}`);
      const d = deferred<PathpointScalar>();
      pending.set(path, d);
      return d.promise;
    },
    onWrite: (path, value) => void events.push(`write ${path}=${value}`),
  });
  const sections: Section[] = [
    { orders: [{ type: 'read', path: 'W1' }, { type: 'read', path: 'W2' }], disposition: 0 },
    { orders: [{ type: 'write', path: 'W3', value: 7 }], disposition: 0 },
  ];
  const running = executor.execute(sections);
  await new Promise((r) => setImmediate(r));
  t.same(events, ['start W1', 'start W2'], 'both reads of the first section started before either finished');
  pending.get('W2')!.resolve(2);
  await new Promise((r) => setImmediate(r));
  t.same(events, ['start W1', 'start W2'], 'the next section waits for the whole section');
  pending.get('W1')!.resolve(1);
  const result = await running;
  t.same(events, ['start W1', 'start W2', 'write W3=7']);
  t.equal(result.ok, true);
  t.same(result.outcomes.map((o) => [o.section, o.index, o.status]), [[0, 0, 'done'], [0, 1, 'done'], [1, 0, 'done']]);
  t.same(readings, [['W2', [NOW, 2]], ['W1', [NOW, 1]]], 'readings reported as they complete');
});

t.test('a write whose stale_after has passed is dropped', async (t) => {
  const writes: string[] = [];
  const { executor } = setup({ onWrite: (path) => void writes.push(path) });
  const nowSeconds = NOW / 1000;
  const result = await executor.execute([
    {
      orders: [
        { type: 'write', path: 'Wstale', value: 1, stale_after: nowSeconds - 1 },
        { type: 'write', path: 'Wfresh', value: 1, stale_after: nowSeconds + 60 },
        { type: 'write', path: 'Wplain', value: 1 },
      ],
      disposition: 0,
    },
  ]);
  t.same(writes, ['Wfresh', 'Wplain']);
  t.same(result.outcomes.map((o) => o.status), ['dropped', 'done', 'done']);
  t.equal(result.ok, true, 'dropping a stale write is not a failure');
});

t.test('FORCE retries with doubling backoff; ADVISE tries once', async (t) => {
  let calls = 0;
  const { executor, sleeps } = setup({
    onWrite: () => {
      if (++calls < 3) throw new Error('bus busy');
    },
  });
  const forced = await executor.execute([{ orders: [{ type: 'write', path: 'W1', value: 1, advise: 1 }], disposition: 0 }]);
  t.same([forced.ok, forced.outcomes[0].attempts, sleeps], [true, 3, [250, 500]]);

  calls = 0;
  sleeps.length = 0;
  const advised = await executor.execute([{ orders: [{ type: 'write', path: 'W1', value: 1, advise: 0 }], disposition: 0 }]);
  t.same([advised.ok, advised.outcomes[0].attempts, advised.outcomes[0].status, sleeps], [false, 1, 'failed', []]);
  t.equal(advised.outcomes[0].error, 'bus busy');

  const { executor: hopeless, sleeps: waited } = setup({
    onRead: () => {
      throw new PathpointError('timeout');
    },
  });
  const result = await hopeless.execute([{ orders: [{ type: 'read', path: 'W1', advise: 1 }], disposition: 0 }]);
  t.same([result.outcomes[0].attempts, waited], [5, [250, 500, 1000, 2000]]);
  t.same(result.outcomes[0].value, [false, NOW, 'timeout']);
});

t.test('FORCE stops retrying a write that goes stale meanwhile', async (t) => {
  let now = NOW;
  const { executor } = setup(
    {
      onWrite: () => {
        now += 2000;
        throw new Error('no answer');
      },
    },
    { now: () => now },
  );
  const result = await executor.execute([{ orders: [{ type: 'write', path: 'W1', value: 1, advise: 1, stale_after: NOW / 1000 + 3 }], disposition: 0 }]);
  t.same([result.outcomes[0].status, result.outcomes[0].attempts], ['dropped', 2]);
});

t.test('read failures are reported as [false, ts, code]', async (t) => {
  const { executor, readings } = setup({
    onRead: (path) => {
      if (path === 'Wtimeout') throw new PathpointError('timeout');
      if (path === 'Wbroken') throw new Error('checksum mismatch');
      if (path === 'Wstring') return 'hello';
      if (path === 'Wbig') return 70_000;
      if (path === 'ftemp') return 21.5;
      return 'text';
    },
  });
  const paths = ['Wtimeout', 'Wbroken', 'Wstring', 'Wbig', 'ftemp', 'uname'];
  const result = await executor.execute([{ orders: paths.map((path) => ({ type: 'read' as const, path })), disposition: 0 }]);
  t.same(readings, [
    ['Wtimeout', [false, NOW, 'timeout']],
    ['Wbroken', [false, NOW, 'malformed']],
    ['Wstring', [false, NOW, 'type']],
    ['Wbig', [false, NOW, 'invalid']],
    ['ftemp', [NOW, 21.5]],
    ['uname', [NOW, 'text']],
  ]);
  t.equal(result.ok, false);
  t.same(result.outcomes.map((o) => o.status), ['failed', 'failed', 'failed', 'failed', 'done', 'done']);
});

t.test('writes of the wrong type fail without reaching the handler', async (t) => {
  const writes: string[] = [];
  const { executor } = setup({ onWrite: (path) => void writes.push(path) });
  const result = await executor.execute([
    {
      orders: [
        { type: 'write', path: 'fSetpoint', value: 'warm', advise: 1 },
        { type: 'write', path: 'W1', value: 70_000 },
        { type: 'write', path: 'w1', value: -5 },
      ],
      disposition: 0,
    },
  ]);
  t.same(result.outcomes.map((o) => [o.status, o.code, o.attempts]), [
    ['failed', 'type', 0],
    ['failed', 'invalid', 0],
    ['done', undefined, 1],
  ]);
  t.same(writes, ['w1']);
});

t.test('wait uses the injected sleep; message and sysctl go to their handlers', async (t) => {
  const calls: unknown[] = [];
  const { executor, sleeps } = setup({
    onMessage: (uuid) => void calls.push(['message', uuid]),
    onSysctl: (op, args) => void calls.push(['sysctl', op, args]),
  });
  const result = await executor.execute([
    { orders: [{ type: 'wait', time: 2.5 }], disposition: 0 },
    {
      orders: [
        { type: 'message', uuid: 'u-1' },
        { type: 'sysctl', op_type: 'reboot', op_args: { delay: 1 } },
      ],
      disposition: 1,
    },
  ]);
  t.same(sleeps, [2500]);
  t.same(calls, [['message', 'u-1'], ['sysctl', 'reboot', { delay: 1 }]]);
  t.equal(result.ok, true);

  const { executor: bare } = setup({});
  const without = await bare.execute([{ orders: [{ type: 'sysctl', op_type: 'update', op_args: null }], disposition: 0 }]);
  t.same([without.ok, without.outcomes[0].error], [false, 'no sysctl handler registered']);
});

t.test('orders skipped by parseSections are logged, not fatal', async (t) => {
  const { executor, warnings } = setup({});
  const parsed = parseSections([{ orders: [{ type: 'teleport' }, { type: 'read', path: 'W1' }], disposition: 0 }]);
  const result = await executor.execute(parsed);
  t.equal(result.ok, true);
  t.equal(result.skipped.length, 1);
  t.same(warnings, ['order skipped']);
  t.same(result.outcomes.map((o) => o.order.type), ['read']);
});

t.test('an attempt that hangs times out and its signal is aborted', async (t) => {
  let signal: AbortSignal | undefined;
  const { executor, readings } = setup(
    {
      onRead: (_, context) => {
        signal = context.signal;
        return new Promise(() => {});
      },
    },
    { attemptTimeoutMs: 20 },
  );
  const result = await executor.execute([{ orders: [{ type: 'read', path: 'W1' }], disposition: 0 }]);
  t.equal(signal?.aborted, true);
  t.same(readings, [['W1', [false, NOW, 'timeout']]]);
  t.equal(result.outcomes[0].code, 'timeout');
});

t.test('a timed-out attempt is aborted and has returned before the retry starts: never two at once', async (t) => {
  let running = 0;
  let most = 0;
  let calls = 0;
  const faults: string[] = [];
  const { executor, sleeps } = setup(
    {
      onWrite: (_, __, { signal }) =>
        new Promise<void>((resolve, reject) => {
          running++;
          most = Math.max(most, running);
          if (++calls === 3) {
            running--;
            return resolve();
          }
          // A handler that honours its signal, a little late.
          signal.addEventListener('abort', () => setTimeout(() => (running--, reject(new Error('aborted'))), 5));
        }),
    },
    { attemptTimeoutMs: 10, onFault: (e) => void faults.push(e.message) },
  );
  const result = await executor.execute([{ orders: [{ type: 'write', path: 'W1', value: 1, advise: 1 }], disposition: 0 }]);
  t.same([result.ok, result.outcomes[0].attempts, most], [true, 3, 1], 'retried twice, one call at a time');
  t.same(sleeps, [250, 500]);
  t.same(faults, [], 'a handler that stops when told is not a fault');
});

t.test('a never-settling handler: aborted on timeout, abandoned, not retried, reported', async (t) => {
  let calls = 0;
  const faults: string[] = [];
  const { executor } = setup(
    {
      onWrite: () => {
        calls++;
        return new Promise<void>(() => {});
      },
    },
    { attemptTimeoutMs: 10, abortGraceMs: 10, onFault: (e) => void faults.push(e.message) },
  );
  const result = await executor.execute([{ orders: [{ type: 'write', path: 'W1', value: 1, advise: 1 }], disposition: 0 }]);
  t.equal(calls, 1, 'FORCE, yet not retried: the first call may still be writing');
  t.match(result.outcomes[0], { status: 'failed', code: 'timeout', error: /the handler did not stop, so it is not retried/ });
  t.match(faults, [/^write W1: handler did not return within 10 ms of being aborted/]);
});

t.test('a handler that throws something other than PathpointError is reported as a fault', async (t) => {
  const faults: string[] = [];
  const { executor } = setup(
    {
      onRead: (path) => {
        if (path === 'W1') throw new TypeError('cannot read properties of undefined');
        throw new PathpointError('timeout');
      },
    },
    { onFault: (e) => void faults.push(e.message) },
  );
  const result = await executor.execute([{ orders: [{ type: 'read', path: 'W1' }, { type: 'read', path: 'W2' }], disposition: 0 }]);
  t.same(result.outcomes.map((o) => o.code), ['malformed', 'timeout']);
  t.same(faults, ['read W1: handler threw TypeError: cannot read properties of undefined'], 'a PathpointError is an answer, not a fault');
});

t.test('cancelling an execution aborts the handler and ends a wait at once; the default wait does not hold the process', async (t) => {
  let seen: AbortSignal | undefined;
  const executor = new OrderExecutor({
    handlers: {
      onRead: () => 0,
      onWrite: (_, __, { signal }) => {
        seen = signal;
        return new Promise<void>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      },
    },
  });
  const controller = new AbortController();
  const waiting = executor.execute([{ orders: [{ type: 'wait', time: 3600 }], disposition: 0 }], { signal: controller.signal });
  const writing = executor.execute([{ orders: [{ type: 'write', path: 'W1', value: 1, advise: 1 }], disposition: 0 }], { signal: controller.signal });
  await new Promise((r) => setImmediate(r));
  controller.abort();
  const [w, x] = await Promise.all([waiting, writing]);
  t.same([w.ok, x.ok, x.outcomes[0].attempts], [false, false, 1], 'not retried after the cancel');
  t.equal(seen?.aborted, true);
  const late = await executor.execute([{ orders: [{ type: 'read', path: 'W1' }], disposition: 0 }], { signal: controller.signal });
  t.same([late.ok, late.outcomes[0].error], [false, 'order cancelled'], 'nothing starts once cancelled');
});

t.test('a reading that cannot be stored fails its order', async (t) => {
  const { executor } = setup({}, { onReading: () => Promise.reject(new Error('disk full')) });
  const result = await executor.execute([{ orders: [{ type: 'read', path: 'W1' }], disposition: 0 }]);
  t.same([result.ok, result.outcomes[0].error], [false, 'disk full']);
});

t.test('pathpoint types from the first letter', async (t) => {
  t.same(['W1', 'w1', 'fT', 'dX', 'Bon', 'uName', 'rW7', 'xyz', 'r'].map(pathpointType), ['W', 'w', 'f', 'd', 'B', 'u', 'W', undefined, undefined]);
  t.equal(valueProblem('B1', 1), undefined);
  t.equal(valueProblem('B1', 2), 'invalid');
  t.equal(valueProblem('B1', true), 'type');
  t.equal(valueProblem('w1', -32768), undefined);
  t.equal(valueProblem('w1', 1.5), 'invalid');
  t.equal(valueProblem('W1', 65535n), undefined);
  t.equal(valueProblem('d1', NaN), 'invalid');
  t.equal(valueProblem('u1', 5), 'type');
  t.equal(valueProblem('other', 'anything'), undefined);
  t.equal(valueProblem('other', undefined), 'type');
});
