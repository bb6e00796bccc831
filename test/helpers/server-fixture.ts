/** A PKI made once per test file, and a server on ephemeral loopback ports with captured logs. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createCA, createDeviceCertificate, createServerCertificate, type CertificateAndKey, type DeviceCertificateOptions } from '../../src/pki/index.js';
import { startServer, type NgttServer, type ServerOptions } from '../../src/server/index.js';
import { RawDevice } from './raw-device.js';

export interface TestPki {
  ca: CertificateAndKey;
  server: CertificateAndKey;
  device(deviceId: string, options?: Omit<DeviceCertificateOptions, 'deviceId'>): Promise<CertificateAndKey>;
}

export async function makePki(): Promise<TestPki> {
  const ca = await createCA({ commonName: 'NGTT test CA' });
  const server = await createServerCertificate(ca, { hosts: ['localhost', '127.0.0.1'] });
  const cache = new Map<string, Promise<CertificateAndKey>>();
  return {
    ca,
    server,
    device: (deviceId, options) => {
      if (options) return createDeviceCertificate(ca, { deviceId, ...options });
      if (!cache.has(deviceId)) cache.set(deviceId, createDeviceCertificate(ca, { deviceId, environment: 2 }));
      return cache.get(deviceId)!;
    },
  };
}

export interface TestServer extends NgttServer {
  logs: Record<string, unknown>[];
  connect(deviceId: string): Promise<RawDevice>;
}

export async function startTestServer(pki: TestPki, options: Partial<ServerOptions> = {}): Promise<TestServer> {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const server = await startServer({
    tls: { ca: pki.ca.cert, cert: pki.server.cert, key: pki.server.key },
    ngttPort: 0,
    httpsPort: 0,
    adminPort: 0,
    logger: pino({ level: 'debug' }, sink),
    ...options,
  });
  return Object.assign(server, {
    logs,
    connect: async (deviceId: string) => RawDevice.connect(server.ngttPort, { ca: pki.ca.cert, ...(await pki.device(deviceId)) }),
  });
}

export const readSection = (path: string) => [{ orders: [{ type: 'read', path }], disposition: 0 }];
