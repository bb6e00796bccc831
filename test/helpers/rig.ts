/**
 * The fault-injection rig: the reference server (memory store) on loopback, the fault proxy in
 * front of its NGTT port, and a real NgttDevice (NGTT only, SQLite spool, counting handlers)
 * connected to the proxy with short backoff and batching timings.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { NgttDevice, type NgttDeviceOptions } from '../../src/device/ngtt-device.js';
import { startServer, type NgttServer } from '../../src/server/index.js';
import { FaultProxy, type FaultPolicy } from './fault-proxy.js';
import { countingHandlers } from './reliability.js';
import type { TestPki } from './server-fixture.js';

export interface Rig {
  server: NgttServer;
  proxy: FaultProxy;
  device: NgttDevice;
  /** Paths of the orders the device executed, in order. */
  executions: string[];
}

export async function startRig(
  t: { teardown(fn: () => unknown): void },
  pki: TestPki,
  o: { deviceId: string; dir: string; policy?: FaultPolicy; timings?: NgttDeviceOptions['timings']; random?: () => number },
): Promise<Rig> {
  const server = await startServer({
    tls: { ca: pki.ca.cert, cert: pki.server.cert, key: pki.server.key },
    ngttPort: 0,
    httpsPort: 0,
    adminPort: null,
    logger: pino({ enabled: false }),
  });
  t.teardown(() => server.close());
  const proxy = await FaultProxy.start(server.ngttPort, o.policy);
  t.teardown(() => proxy.close());
  const executions: string[] = [];
  const device = new NgttDevice({
    host: '127.0.0.1',
    ngttPort: proxy.port,
    httpsPort: server.httpsPort,
    ca: pki.ca.cert,
    ...(await pki.device(o.deviceId)),
    ngtt: true,
    graceMs: 3_600_000, // NGTT only: the HTTPS fallback is tested in test/device/ngtt-device.test.ts
    spoolPath: join(o.dir, `${o.deviceId}.db`),
    handlers: countingHandlers((p) => executions.push(p)),
    timings: { ...o.timings, backoff: { baseMs: 2, maxMs: 20 } },
    upload: { maxBatchAgeMs: 2, maxBatchValues: 20 },
    random: o.random,
  });
  device.start();
  t.teardown(() => device.close({ timeoutMs: 1000 }));
  return { server, proxy, device, executions };
}
