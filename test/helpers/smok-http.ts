/**
 * The HTTPS side of the original Python client (smok-client, smok/client/api.py RequestsAPI,
 * with `requests`), as the server sees it:
 * - `json=` bodies go out as MiniJSON with `Content-Type: application/minijson`; no body: a POST
 *   with `Content-Length: 0` and no Content-Type; `files=` as multipart/form-data, every part a
 *   file part named after its key (`filename` = the key), no part Content-Type;
 * - requests' default headers: `Accept: *\/*`, `Accept-Encoding: gzip, deflate`, keep-alive;
 * - status 200 or 201 is success, and the body is parsed with `resp.json()` (a body that is not
 *   JSON fails); `direct_response=True` returns the raw bytes and headers whatever the status;
 * - any other status raises ResponseError with `resp.json()['status']`, or the raw text when the
 *   body is not JSON. A JSON body WITHOUT `status` raises KeyError in the client, outside its
 *   retry logic: here it throws ClientKeyError so that a test fails.
 * - production devices present their certificate; staging ones send it in
 *   `X-SSL-Client-Certificate` (PEM, newlines as tabs) to a TLS-terminating proxy instead.
 */
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { encode } from '../../src/minijson/index.js';

export class ResponseError extends Error {
  constructor(
    readonly statusCode: number,
    readonly status: string,
  ) {
    super(`HTTP ${statusCode}: ${status}`);
  }
}

/** What the Python client would hit: KeyError on `resp.json()['status']`. */
export class ClientKeyError extends Error {}

export interface SmokClientOptions {
  port: number;
  ca: string;
  /** Production: the device's certificate and key on the TLS connection. */
  cert?: string;
  key?: string;
  /** Staging: the certificate PEM sent in X-SSL-Client-Certificate, newlines as tabs. */
  headerCert?: string;
}

export interface RequestOptions {
  json?: unknown;
  files?: Record<string, Uint8Array>;
  directResponse?: boolean;
}

export class SmokHttpClient {
  private readonly agent: https.Agent;

  constructor(private readonly o: SmokClientOptions) {
    this.agent = new https.Agent({ keepAlive: true, ca: o.ca, cert: o.cert, key: o.key, servername: 'localhost' });
  }

  get(path: string, options: RequestOptions = {}) {
    return this.request('GET', path, options);
  }

  post(path: string, options: RequestOptions = {}) {
    return this.request('POST', path, options);
  }

  put(path: string, options: RequestOptions = {}) {
    return this.request('PUT', path, options);
  }

  /** JSON value on success; `[bytes, headers]` with directResponse; throws ResponseError / ClientKeyError. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<unknown> {
    const headers: Record<string, string | number> = {
      'User-Agent': 'python-requests/2.31.0',
      'Accept-Encoding': 'gzip, deflate',
      Accept: '*/*',
      Connection: 'keep-alive',
    };
    let body: Buffer | undefined;
    if (options.json !== undefined) {
      body = Buffer.from(encode(options.json));
      headers['Content-Type'] = 'application/minijson';
    } else if (options.files) {
      const boundary = randomBytes(16).toString('hex');
      const parts = Object.entries(options.files).map(([name, bytes]) =>
        Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\n\r\n`), Buffer.from(bytes), Buffer.from('\r\n')]),
      );
      body = Buffer.concat([...parts, Buffer.from(`--${boundary}--\r\n`)]);
      headers['Content-Type'] = `multipart/form-data; boundary=${boundary}`;
    } else if (method === 'POST' || method === 'PUT') {
      body = Buffer.alloc(0);
    }
    if (body) headers['Content-Length'] = body.length;
    if (this.o.headerCert) headers['X-SSL-Client-Certificate'] = this.o.headerCert.replace(/\r\n/g, '\n').replace(/\n/g, '\t');
    const { status, bytes, responseHeaders } = await new Promise<{ status: number; bytes: Buffer; responseHeaders: Record<string, unknown> }>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: this.o.port, method, path, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, bytes: Buffer.concat(chunks), responseHeaders: res.headers }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
    if (status !== 200 && status !== 201) {
      if (options.directResponse) return [bytes, responseHeaders];
      let parsed: unknown;
      try {
        parsed = JSON.parse(bytes.toString('utf8'));
      } catch {
        throw new ResponseError(status, bytes.toString('utf8'));
      }
      if (typeof parsed !== 'object' || parsed === null || !('status' in parsed)) throw new ClientKeyError(`HTTP ${status} with a JSON body without "status": ${bytes.toString('utf8')}`);
      throw new ResponseError(status, String((parsed as { status: unknown }).status));
    }
    if (options.directResponse) return [bytes, responseHeaders];
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new ResponseError(status, `not JSON: ${bytes.toString('utf8').slice(0, 100)}`);
    }
  }

  close(): void {
    this.agent.destroy();
  }
}
