/** The live view's HTTP side: loopback only, its own pages only, clear errors. */
import { request } from 'node:http';
import t from 'tap';
import { ListenError, startLiveView } from '../../src/live/index.js';

function call(port: number, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        // An event stream never ends: its first event is enough.
        if (res.headers['content-type'] === 'text/event-stream' && text.includes('\n\n')) res.destroy();
      });
      res.on('close', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), text }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

t.test('serves its page and a snapshot first; refuses other hosts, other origins and bad orders', async (t) => {
  const live = await startLiveView();
  t.teardown(() => live.close());
  t.match(live.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const page = await call(live.port, '/');
  t.equal(page.status, 200);
  t.match(page.text, '<script src="/live.js">');
  const events = await call(live.port, '/events');
  t.match(events.text, /^event: snapshot\ndata: \{/, 'a new page gets the whole picture first');
  t.equal((await call(live.port, '/', { headers: { host: `attacker.example:${live.port}` } })).status, 421, 'a rebound DNS name is refused');
  const json = JSON.stringify({ deviceId: 'dev-1', sections: [] });
  const cross = await call(live.port, '/orders', { method: 'POST', headers: { origin: 'http://attacker.example', 'content-type': 'application/json' }, body: json });
  t.equal(cross.status, 403, 'another site cannot send orders');
  const unknown = await call(live.port, '/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: json });
  t.equal(unknown.status, 400);
  t.match(JSON.parse(unknown.text).error, /deviceId must be one of/);
  const garbage = await call(live.port, '/orders', { method: 'POST', body: '{' });
  t.equal(garbage.status, 400);
  t.match(JSON.parse(garbage.text).error, /^not JSON/);
});

t.test('a busy port is a one-line error', async (t) => {
  const first = await startLiveView();
  t.teardown(() => first.close());
  const error = await startLiveView({ port: first.port }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(error, ListenError);
  t.equal((error as ListenError).code, 'EADDRINUSE');
  t.equal((error as Error).message, `the live view cannot listen on 127.0.0.1:${first.port}: the port is in use (choose another port, or 0 for a free one)`);
});
