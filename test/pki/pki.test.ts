import '../../src/pki/reflect-metadata.js'; // before @peculiar/x509
import { X509Certificate as NodeX509 } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PemConverter, Extension, X509CertificateGenerator } from '@peculiar/x509';
import t from 'tap';
import {
  createCA,
  createDevDevice,
  createDeviceCertificate,
  createDevPki,
  createServerCertificate,
  IdentityError,
  loadDevDevice,
  loadDevPki,
  OID_DEVICE_ID,
  OID_ENVIRONMENT,
  PkiFileError,
  readDeviceIdentity,
} from '../../src/pki/index.js';
import { decodeInteger, decodeString, encodeInteger, encodeUtf8String } from '../../src/pki/der.js';

const ca = await createCA({ commonName: 'test CA' });

t.test('DER helpers round trip strings and integers', async (t) => {
  for (const s of ['', 'dev-1', 'ząb €', 'x'.repeat(300)]) t.equal(decodeString(encodeUtf8String(s)), s);
  for (const n of [0, 1, 2, 127, 128, 255, 256, -1, -128, -129, 65535, 2 ** 40]) t.equal(decodeInteger(encodeInteger(n)), n, `integer ${n}`);
  t.equal(encodeInteger(0).toString('hex'), '020100');
  t.equal(encodeInteger(128).toString('hex'), '02020080');
  t.equal(encodeInteger(-1).toString('hex'), '0201ff');
  t.equal(encodeUtf8String('ab').toString('hex'), '0c026162');
  t.throws(() => decodeString(Buffer.from('0c0561', 'hex')), /length/);
  t.throws(() => decodeString(Buffer.from('0201ff', 'hex')), /expected an ASN.1 string/);
  t.throws(() => decodeString(Buffer.from('0c02c328', 'hex')), /do not decode/);
  // Other string types are read too (spec §2: "read any ASN.1 string type").
  t.equal(decodeString(Buffer.from('1303414243', 'hex')), 'ABC'); // PrintableString
  t.equal(decodeString(Buffer.from('1e0400410042', 'hex')), 'AB'); // BMPString
});

t.test('device certificate carries DeviceID and Environment; identity from PEM and DER', async (t) => {
  const device = await createDeviceCertificate(ca, { deviceId: 'dev-ąę-1', environment: 2 });
  t.same(readDeviceIdentity(device.cert), { deviceId: 'dev-ąę-1', environment: 2 });
  const der = Buffer.from(PemConverter.decode(device.cert)[0]);
  t.same(readDeviceIdentity(der), { deviceId: 'dev-ąę-1', environment: 2 });
  t.same(readDeviceIdentity(new Uint8Array(der)), { deviceId: 'dev-ąę-1', environment: 2 });

  // node's own parser agrees that the CA issued it and the extensions are non-critical.
  const node = new NodeX509(device.cert);
  t.ok(node.verify(new NodeX509(ca.cert).publicKey), 'signed by the CA');
  t.ok(node.checkIssued(new NodeX509(ca.cert)));
  t.equal(node.publicKey.asymmetricKeyType, 'ec');

  const noEnv = await createDeviceCertificate(ca, { deviceId: 'd2' });
  t.same(readDeviceIdentity(noEnv.cert), { deviceId: 'd2', environment: null });
});

t.test('explicit validity', async (t) => {
  const notBefore = new Date('2020-01-01T00:00:00Z');
  const notAfter = new Date('2020-02-01T00:00:00Z');
  const expired = await createDeviceCertificate(ca, { deviceId: 'old', notBefore, notAfter });
  const node = new NodeX509(expired.cert);
  t.equal(new Date(node.validTo).toISOString(), notAfter.toISOString());
  t.equal(new Date(node.validFrom).toISOString(), notBefore.toISOString());
});

t.test('server certificate names hosts and IPs', async (t) => {
  const server = await createServerCertificate(ca, { hosts: ['localhost', '127.0.0.1'] });
  const node = new NodeX509(server.cert);
  t.equal(node.checkHost('localhost'), 'localhost');
  t.equal(node.checkIP('127.0.0.1'), '127.0.0.1');
  t.equal(node.checkHost('example.com'), undefined);
  t.throws(() => readDeviceIdentity(server.cert), IdentityError, 'a server certificate is no device certificate');
  await t.rejects(createServerCertificate(ca, { hosts: [] }));
});

t.test('identity errors are clear', async (t) => {
  const none = await createDeviceCertificate(ca, { deviceId: 'x', omitDeviceId: true });
  t.throws(() => readDeviceIdentity(none.cert), { name: 'IdentityError', message: /no DeviceID extension/ });
  t.throws(() => readDeviceIdentity('not a certificate'), { name: 'IdentityError', message: /not an X.509 certificate/ });
  t.throws(() => readDeviceIdentity(Buffer.from([0x30, 0x03, 1, 2, 3])), IdentityError);

  // A DeviceID that is an INTEGER, and one with broken UTF-8: undecodable, not silently accepted.
  for (const [value, label] of [
    [encodeInteger(5), 'INTEGER'],
    [Buffer.from('0c02c328', 'hex'), 'bad UTF-8'],
  ] as const) {
    const cert = await certWithExtensions([new Extension(OID_DEVICE_ID, false, value)]);
    t.throws(() => readDeviceIdentity(cert), { name: 'IdentityError', message: /undecodable DeviceID/ }, label);
  }
  const badEnv = await certWithExtensions([
    new Extension(OID_DEVICE_ID, false, encodeUtf8String('ok')),
    new Extension(OID_ENVIRONMENT, false, encodeUtf8String('prod')),
  ]);
  t.throws(() => readDeviceIdentity(badEnv), /undecodable Environment/);
  // A PrintableString DeviceID (written by some other tool) is accepted.
  const printable = await certWithExtensions([new Extension(OID_DEVICE_ID, false, Buffer.from('1303414243', 'hex'))]);
  t.same(readDeviceIdentity(printable), { deviceId: 'ABC', environment: null });
});

t.test('dev PKI folder: create, load, refuse to overwrite, keys 0600', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ngtt-pki-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pki = await createDevPki(dir);
  const loaded = await loadDevPki(dir);
  t.equal(loaded.ca.cert, pki.ca.cert);
  t.equal(loaded.server.key, pki.server.key);
  t.equal((await stat(join(dir, 'ca.key'))).mode & 0o777, 0o600);
  t.equal((await stat(join(dir, 'server.key'))).mode & 0o777, 0o600);
  await t.rejects(createDevPki(dir), PkiFileError);
  t.equal(await readFile(join(dir, 'ca.crt'), 'utf8'), pki.ca.cert, 'refused create left the CA alone');

  const dev = await createDevDevice(dir, 'sensor-7', { environment: 1 });
  t.same(readDeviceIdentity(dev.cert), { deviceId: 'sensor-7', environment: 1 });
  t.equal((await stat(dev.keyPath)).mode & 0o777, 0o600);
  t.same(await loadDevDevice(dir, 'sensor-7'), { cert: dev.cert, key: dev.key });
  await t.rejects(createDevDevice(dir, 'sensor-7'), { name: 'PkiFileError', message: /already exists/ });
  await t.rejects(createDevDevice(dir, '../evil'), { name: 'PkiFileError', message: /file name/ });

  // --force overwrites, and a key made world-readable in between becomes 0600 again.
  await writeFile(dev.keyPath, 'x', { mode: 0o644 });
  const again = await createDevDevice(dir, 'sensor-7', { force: true });
  t.not(again.cert, dev.cert);
  t.equal((await stat(dev.keyPath)).mode & 0o777, 0o600);
  await t.rejects(loadDevPki(join(dir, 'missing')), { name: 'PkiFileError', message: /does not exist/ });
});

async function certWithExtensions(extensions: Extension[]): Promise<string> {
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const cert = await X509CertificateGenerator.createSelfSigned({
    name: 'CN=odd',
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions,
  });
  return cert.toString('pem');
}
