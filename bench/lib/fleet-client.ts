/**
 * The device fleet of bench/fleet.ts, as a child process: N light NGTT devices (raw frames, no
 * NgttDevice) on mutual TLS, opened at a bounded rate; each sends FETCH_ORDERS, PINGs every
 * `pingMs` (at most 64 handshakes pending at once), and confirms each ORDER at once, noting when it arrived (CLOCK_MONOTONIC).
 * With `protocol: 'mqtt'` the same connections go to an MQTT broker instead (mosquitto, for the
 * memory comparison): MQTT 3.1.1 CONNECT (clean session, keep-alive 3 × pingMs), wait for
 * CONNACK, then PINGREQ every `pingMs`; written by hand so that each idle device costs the fleet
 * process no more than the NGTT one does.
 *
 * NGTT identifies a device by its certificate, so each needs its own. Issuing 10 000
 * one by one takes minutes, so one device certificate is made the normal way and the others
 * are derived from it: the DeviceID (same length) is replaced in the to-be-signed part, which is
 * then signed again with the CA key. They share the template's key pair (fine for a benchmark:
 * the server reads the identity from the verified certificate, and each verifies).
 */
import { createPrivateKey, sign, X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { decode } from '../../src/minijson/index.js';
import { createDeviceCertificate } from '../../src/pki/index.js';
import { encodeFrame, FrameDecoder, FrameType } from '../../src/protocol/index.js';
import { now } from './common.js';

export type FleetRequest =
  | { type: 'start'; ca: { cert: string; key: string }; port: number; count: number; ratePerSecond: number; pingMs: number; protocol?: 'ngtt' | 'mqtt' }
  | { type: 'report' }
  | { type: 'close' };
export type FleetEvent =
  | { type: 'certificates'; ms: number }
  | { type: 'connected'; connected: number; failed: number; firstError?: string; ms: number; handshakeP99: number }
  | { type: 'report'; handled: [string, number][]; disconnects: number }
  | { type: 'closed' };

const send = (e: FleetEvent) => process.send!(e);
export const fleetDeviceId = (i: number) => `fleet-${String(i).padStart(6, '0')}`;

/** TLV at `at`: [header length, content length]. */
function tlv(der: Buffer, at: number): [number, number] {
  const first = der[at + 1];
  if (first < 0x80) return [2, first];
  const n = first & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i];
  return [2 + n, len];
}

function derLength(len: number): Buffer {
  if (len < 0x80) return Buffer.of(len);
  const bytes: number[] = [];
  for (let l = len; l > 0; l >>= 8) bytes.unshift(l & 0xff);
  return Buffer.of(0x80 | bytes.length, ...bytes);
}

async function certificateFactory(ca: { cert: string; key: string }) {
  const template = await createDeviceCertificate(ca, { deviceId: fleetDeviceId(0), environment: 2 });
  const der = Buffer.from(new X509Certificate(template.cert).raw);
  const [outerHeader] = tlv(der, 0);
  const tbsAt = outerHeader;
  const [tbsHeader, tbsLength] = tlv(der, tbsAt);
  const tbs = der.subarray(tbsAt, tbsAt + tbsHeader + tbsLength);
  const algAt = tbsAt + tbsHeader + tbsLength;
  const [algHeader, algLength] = tlv(der, algAt);
  const alg = der.subarray(algAt, algAt + algHeader + algLength);
  const caKey = createPrivateKey(ca.key);
  const marker = Buffer.from(fleetDeviceId(0));
  const make = (i: number): string => {
    const id = Buffer.from(fleetDeviceId(i));
    const t = Buffer.from(tbs);
    for (let at = t.indexOf(marker); at >= 0; at = t.indexOf(marker, at + 1)) id.copy(t, at);
    const signature = sign('sha256', t, { key: caKey, dsaEncoding: 'der' });
    const bits = Buffer.concat([Buffer.of(0x03), derLength(signature.length + 1), Buffer.of(0), signature]);
    const body = Buffer.concat([t, alg, bits]);
    const cert = Buffer.concat([Buffer.of(0x30), derLength(body.length), body]);
    return `-----BEGIN CERTIFICATE-----\n${cert.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
  };
  // Every derived certificate goes with the template's key.
  return { make, key: template.key };
}

/** MQTT 3.1.1 CONNECT: clean session, the given keep-alive (s) and client id. */
function mqttConnect(clientId: string, keepAliveS: number): Buffer {
  const id = Buffer.from(clientId);
  const variable = Buffer.of(0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, keepAliveS >> 8, keepAliveS & 0xff);
  const remaining = variable.length + 2 + id.length; // < 128: one length byte
  return Buffer.concat([Buffer.of(0x10, remaining), variable, Buffer.of(id.length >> 8, id.length & 0xff), id]);
}
const MQTT_PINGREQ = Buffer.of(0xc0, 0);

const sockets: tls.TLSSocket[] = [];
const handled = new Map<string, number>();
let disconnects = 0;
let closing = false;

async function start(m: Extract<FleetRequest, { type: 'start' }>) {
  const t0 = now();
  const { make, key } = await certificateFactory(m.ca);
  const certs = Array.from({ length: m.count }, (_, i) => make(i));
  send({ type: 'certificates', ms: now() - t0 });

  const mqtt = m.protocol === 'mqtt';
  const ping = mqtt ? MQTT_PINGREQ : encodeFrame(0, FrameType.PING);
  const fetch = encodeFrame(0, FrameType.FETCH_ORDERS);
  const keepAliveS = Math.ceil((3 * m.pingMs) / 1000);
  /**
   * Opens device i's mutual-TLS connection; `greet` speaks the protocol's opening and calls
   * `ready` once the device is connected, after which it PINGs every pingMs until closed.
   */
  const connect = (i: number, greet: (s: tls.TLSSocket, ready: () => void, fail: (e: Error) => void) => void) =>
    new Promise<number>((resolve, reject) => {
      const started = now();
      const s = tls.connect({ host: '127.0.0.1', port: m.port, ca: m.ca.cert, cert: certs[i], key, rejectUnauthorized: true }, () =>
        greet(
          s,
          () => {
            const timer = setInterval(() => s.write(ping), m.pingMs);
            timer.unref();
            s.once('close', () => {
              clearInterval(timer);
              if (!closing) disconnects++;
            });
            sockets.push(s);
            resolve(now() - started);
          },
          reject,
        ),
      );
      s.setNoDelay(true);
      s.on('error', (e) => reject(e));
    });
  const openMqtt = (i: number) =>
    connect(i, (s, ready, fail) => {
      s.write(mqttConnect(fleetDeviceId(i), keepAliveS));
      s.once('data', (d: Buffer) => {
        // CONNACK: 0x20 0x02 flags return-code; anything else is a refusal.
        if (d[0] !== 0x20 || d[3] !== 0) return fail(new Error(`MQTT CONNECT refused: ${d.subarray(0, 4).toString('hex')}`));
        s.on('data', () => {}); // PINGRESPs
        ready();
      });
    });
  const openNgtt = (i: number) =>
    connect(i, (s, ready) => {
      const decoder = new FrameDecoder();
      s.on('data', (chunk: Buffer) => {
        for (const f of decoder.push(chunk)) {
          if (f.type !== FrameType.ORDER) continue;
          const sections = decode(f.payload) as { id: string }[];
          handled.set(sections[0].id, now());
          s.write(encodeFrame(f.tid, FrameType.ORDER_CONFIRM));
        }
      });
      s.write(fetch);
      ready();
    });
  const open = mqtt ? openMqtt : openNgtt;

  const t1 = now();
  let failed = 0;
  let firstError: string | undefined;
  const handshakes: number[] = [];
  const pending: Promise<void>[] = [];
  // At most this many handshakes at once: beyond what the server completes, an open-loop rate
  // only overflows its accept backlog (connections reset).
  const MAX_PENDING = 64;
  let inFlight = 0;
  let slot: (() => void) | null = null;
  for (let i = 0; i < m.count; i++) {
    while (inFlight >= MAX_PENDING) await new Promise<void>((r) => (slot = r));
    // bounded rate: device i starts at t1 + i / rate
    const due = t1 + (i * 1000) / m.ratePerSecond;
    const wait = due - now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inFlight++;
    const done = () => {
      inFlight--;
      const s = slot;
      slot = null;
      s?.();
    };
    pending.push(
      open(i).finally(done).then(
        (ms) => void handshakes.push(ms),
        (e: Error) => {
          failed++;
          firstError ??= e.message;
        },
      ),
    );
  }
  await Promise.all(pending);
  handshakes.sort((a, b) => a - b);
  send({ type: 'connected', connected: sockets.length, failed, firstError, ms: now() - t1, handshakeP99: handshakes[Math.floor(handshakes.length * 0.99)] ?? NaN });
}

process.once('disconnect', () => process.exit(0));
process.on('message', (m: FleetRequest) => {
  if (m.type === 'start') void start(m).catch((e) => (console.error(e), process.exit(1)));
  else if (m.type === 'report') send({ type: 'report', handled: [...handled], disconnects });
  else if (m.type === 'close') {
    closing = true;
    for (const s of sockets) s.destroy();
    send({ type: 'closed' });
    setTimeout(() => process.exit(0), 100);
  }
});
