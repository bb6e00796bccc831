import type { Readable } from 'node:stream';

/**
 * Reads a whole HTTP body (a request or an answer) into memory, at most `limit` bytes: past it the
 * stream is destroyed and the promise rejects with `tooLarge()`, so a peer cannot make us buffer
 * without bound.
 */
export function readLimited(stream: Readable, limit: number, tooLarge: () => Error): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(tooLarge());
        stream.destroy();
      } else chunks.push(chunk);
    });
    stream.on('error', reject);
    stream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}
