import { X509Certificate as NodeX509 } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  createCA,
  createDevDevice,
  createDeviceCertificate,
  createDevPki,
  createServerCertificate,
  type CustomExtension,
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
  t.throws(() => decodeString(Buffer.from('0c0261620000', 'hex')), /bytes after the DER value/);
  t.throws(() => decodeString(Buffer.from('2c040c026162', 'hex')), /constructed/, 'a constructed (BER) UTF8String');
  t.throws(() => decodeString(Buffer.alloc(0)), /empty/);
  t.throws(() => decodeString(Buffer.from('8c026162', 'hex')), /universal/, 'a context-specific tag');
  t.throws(() => decodeString(Buffer.from('0c02c328', 'hex')), /do not decode/);
  // Other string types are read too (spec §2: "read any ASN.1 string type").
  t.equal(decodeString(Buffer.from('1303414243', 'hex')), 'ABC'); // PrintableString
  t.equal(decodeString(Buffer.from('1e0400410042', 'hex')), 'AB'); // BMPString
});

t.test('device certificate carries DeviceID and Environment; identity from PEM and DER', async (t) => {
  const device = await createDeviceCertificate(ca, { deviceId: 'dev-ąę-1', environment: 2 });
  t.same(readDeviceIdentity(device.cert), { deviceId: 'dev-ąę-1', environment: 2 });
  const der = new NodeX509(device.cert).raw;
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

  // A DeviceID that is an INTEGER, broken UTF-8, trailing bytes, a constructed string: undecodable, not silently accepted.
  for (const [hex, label] of [
    ['020105', 'INTEGER'],
    ['0c02c328', 'bad UTF-8'],
    ['0c02616200', 'a byte after the string'],
    ['2c060c01610c0162', 'constructed (BER) UTF8String'],
    ['', 'empty value'],
  ] as const) {
    const cert = await certWithExtensions([{ oid: OID_DEVICE_ID, value: Buffer.from(hex, 'hex') }]);
    t.throws(() => readDeviceIdentity(cert), { name: 'IdentityError', message: /undecodable DeviceID/ }, label);
  }
  const badEnv = await certWithExtensions([
    { oid: OID_DEVICE_ID, value: encodeUtf8String('ok') },
    { oid: OID_ENVIRONMENT, value: encodeUtf8String('prod') },
  ]);
  t.throws(() => readDeviceIdentity(badEnv), /undecodable Environment/);
  const hugeEnv = await certWithExtensions([
    { oid: OID_DEVICE_ID, value: encodeUtf8String('ok') },
    { oid: OID_ENVIRONMENT, value: Buffer.from('020801' + '00'.repeat(7), 'hex') },
  ]);
  t.throws(() => readDeviceIdentity(hugeEnv), /undecodable Environment: INTEGER is empty or too large/);
  const empty = await certWithExtensions([{ oid: OID_DEVICE_ID, value: encodeUtf8String('') }]);
  t.throws(() => readDeviceIdentity(empty), /empty DeviceID/);
  // RFC 5280: an extension appears at most once; two DeviceIDs would make the identity ambiguous.
  const twice = await certWithExtensions([
    { oid: OID_DEVICE_ID, value: encodeUtf8String('a') },
    { oid: OID_DEVICE_ID, value: encodeUtf8String('b') },
  ]);
  t.throws(() => readDeviceIdentity(twice), { name: 'IdentityError', message: /2 DeviceID extensions/ });
});

t.test('a DeviceID in any ASN.1 string type is read (spec §2)', async (t) => {
  for (const [hex, expected, type] of [
    ['1303414243', 'ABC', 'PrintableString'],
    ['1603616263', 'abc', 'IA5String'],
    ['1203313233', '123', 'NumericString'],
    ['1a03782d31', 'x-1', 'VisibleString'],
    ['1403e96c65', 'éle', 'TeletexString (read as latin1)'],
    ['1e0600640065010d', 'deč', 'BMPString'],
    ['1c080001f6000000003f', '😀?', 'UniversalString'],
    ['0c04c5bcc3b3', 'żó', 'UTF8String'],
  ] as const) {
    const cert = await certWithExtensions([{ oid: OID_DEVICE_ID, value: Buffer.from(hex, 'hex') }]);
    t.same(readDeviceIdentity(cert), { deviceId: expected, environment: null }, type);
  }
  // A critical DeviceID (some CAs mark it so) and other extensions around it change nothing.
  const critical = await certWithExtensions([
    { oid: '1.2.3.4.5', value: Buffer.from('0500', 'hex') },
    { oid: OID_DEVICE_ID, critical: true, value: encodeUtf8String('crit') },
    { oid: OID_ENVIRONMENT, value: encodeInteger(1) },
  ]);
  t.same(readDeviceIdentity(critical), { deviceId: 'crit', environment: 1 });
  t.ok(new NodeX509(critical).verify(new NodeX509(ca.cert).publicKey), 'signed by the CA, extensions and all');
});

t.test('garbage is an IdentityError, never a crash', async (t) => {
  const device = await createDeviceCertificate(ca, { deviceId: 'dev-g' });
  const der = new NodeX509(device.cert).raw;
  const garbage: [string | Uint8Array, string][] = [
    ['', 'empty string'],
    [new Uint8Array(0), 'no bytes'],
    ['-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n', 'PEM with broken base64'],
    [der.subarray(0, der.length - 10), 'truncated DER'],
    [Buffer.concat([der.subarray(0, 40), Buffer.alloc(16, 0xff), der.subarray(56)]), 'DER with bytes overwritten'],
    [ca.key, 'a private key'],
  ];
  for (let i = 0; i < 50; i++) garbage.push([Buffer.from(Array.from({ length: 1 + ((i * 37) % 300) }, (_, j) => (j * 131 + i * 17) & 0xff)), `noise ${i}`]);
  for (const [input, label] of garbage) t.throws(() => readDeviceIdentity(input), IdentityError, label);
  // A chain (device certificate first, then its CA) is read from its first certificate.
  t.same(readDeviceIdentity(device.cert + ca.cert), { deviceId: 'dev-g', environment: null });
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

/** A certificate from the test CA with exactly these NGTT-related extensions (and the usual X.509 ones). */
async function certWithExtensions(extensions: CustomExtension[]): Promise<string> {
  return (await createDeviceCertificate(ca, { deviceId: 'unused', omitDeviceId: true, commonName: 'odd', extensions })).cert;
}
