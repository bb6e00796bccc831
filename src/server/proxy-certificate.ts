/**
 * Device identity behind a TLS-terminating proxy (opt-in, spec §9): deployed devices in staging
 * send their certificate in the header `X-SSL-Client-Certificate` (PEM with newlines replaced by
 * tabs) to a proxy that terminated TLS. The header is believed only from the addresses the
 * operator configured as trusted proxies, and only after the certificate's chain has been
 * verified against the device CA, it is a client certificate (not a CA; if it names extended key
 * usages, clientAuth is one) within its validity, and it carries a DeviceID. From anyone else
 * the header is ignored.
 */
import { BlockList, isIP } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { IdentityError, readDeviceIdentity } from '../pki/index.js';

export const PROXY_CERT_HEADER = 'x-ssl-client-certificate';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EKU = '2.5.29.37.0';
const MAX_CHAIN = 5;

/** A header certificate that cannot speak for a device; its message says why. */
export class ProxyCertificateError extends Error {
  override name = 'ProxyCertificateError';
}

/** `10.0.0.7`, `10.0.0.0/8`, `::1`, `fd00::/8` → a BlockList. Throws RangeError on anything else. */
export function trustedProxyList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits, ...rest] = entry.trim().split('/');
    const family = isIP(address);
    const prefix = bits === undefined ? undefined : Number(bits);
    if (!family || rest.length || (prefix !== undefined && (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)))) {
      throw new RangeError(`trusted proxy ${JSON.stringify(entry)} is not an IP address or CIDR range`);
    }
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, prefix, type);
  }
  return list;
}

/** Splits PEM text into certificates. */
function certificates(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

const validNow = (c: X509Certificate, now: number) => Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);

export class ProxyCertificates {
  private readonly trusted: BlockList;
  private readonly anchors: X509Certificate[];
  /** Header value → verified device id and the end of its validity (verification costs a signature check). */
  private readonly cache = new Map<string, { deviceId: string; until: number }>();

  constructor(options: { ca: string | Buffer | (string | Buffer)[]; trustedProxies: readonly string[] }) {
    this.trusted = trustedProxyList(options.trustedProxies);
    this.anchors = [options.ca].flat().flatMap((c) => certificates(c.toString()));
    if (!this.anchors.length) throw new RangeError('no CA certificate to verify proxied device certificates against');
  }

  /** Whether the direct peer at `address` may speak for a device. */
  isTrustedProxy(address: string | undefined): boolean {
    if (!address) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return this.trusted.check(mapped[1], 'ipv4');
    return this.trusted.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
  }

  /** The device id of the header's certificate. Throws ProxyCertificateError. */
  deviceId(header: string): string {
    const now = Date.now();
    const hit = this.cache.get(header);
    if (hit && now <= hit.until) return hit.deviceId;
    const verified = this.verify(header, now);
    if (this.cache.size >= 1000) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(header, verified);
    return verified.deviceId;
  }

  private verify(header: string, now: number): { deviceId: string; until: number } {
    // Tabs for newlines (the deployed client); URL-escaped PEM (nginx $ssl_client_escaped_cert) too.
    let pem = header.replace(/\t/g, '\n');
    if (pem.includes('%')) {
      try {
        pem = decodeURIComponent(pem);
      } catch {
        throw new ProxyCertificateError('X-SSL-Client-Certificate is not valid PEM');
      }
    }
    let chain: X509Certificate[];
    try {
      chain = certificates(pem);
    } catch (e) {
      throw new ProxyCertificateError(`X-SSL-Client-Certificate does not parse: ${(e as Error).message}`);
    }
    const [leaf, ...intermediates] = chain;
    if (!leaf) throw new ProxyCertificateError('X-SSL-Client-Certificate holds no PEM certificate');
    if (!validNow(leaf, now)) throw new ProxyCertificateError(`the device certificate is not valid now (${leaf.validFrom} – ${leaf.validTo})`);
    if (leaf.ca) throw new ProxyCertificateError('the header certificate is a CA certificate, not a device certificate');
    const eku = leaf.keyUsage;
    if (eku && eku.length && !eku.includes(CLIENT_AUTH) && !eku.includes(ANY_EKU)) throw new ProxyCertificateError('the header certificate is not a client certificate (no clientAuth usage)');
    this.checkChain(leaf, intermediates, now);
    try {
      return { deviceId: readDeviceIdentity(leaf.raw).deviceId, until: Date.parse(leaf.validTo) };
    } catch (e) {
      throw new ProxyCertificateError(e instanceof IdentityError ? e.message : 'the header certificate has no usable DeviceID');
    }
  }

  /** Walks from the leaf to one of the configured CA certificates through the header's intermediates. */
  private checkChain(leaf: X509Certificate, intermediates: X509Certificate[], now: number): void {
    let current = leaf;
    for (let depth = 0; depth < MAX_CHAIN; depth++) {
      const issuedBy = (c: X509Certificate) => current.checkIssued(c) && current.verify(c.publicKey) && validNow(c, now);
      if (this.anchors.some(issuedBy)) return;
      const next = intermediates.find((c) => c.ca && issuedBy(c));
      if (!next) break;
      current = next;
    }
    throw new ProxyCertificateError('the header certificate is not issued by the device CA');
  }
}
