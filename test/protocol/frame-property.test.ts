import fc from 'fast-check';
import t from 'tap';
import { encodeFrame, FrameDecoder, ProtocolError, type Frame } from '../../src/protocol/index.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);

const frame = fc.record({
  tid: fc.integer({ min: 0, max: 0xffff }),
  type: fc.integer({ min: 0, max: 0xffff }),
  payload: fc.uint8Array({ maxLength: 200 }),
});

/** Cuts `bytes` at the given points (taken modulo its length). */
function chunk(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (bytes.length ? c % bytes.length : 0)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(bytes.subarray(last, p));
    last = p;
  }
  out.push(bytes.subarray(last));
  return out;
}

t.test('any chunking of a valid stream yields the same frames', async (t) => {
  fc.assert(
    fc.property(fc.array(frame, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (frames, cuts) => {
      const stream = Buffer.concat(frames.map((f) => encodeFrame(f.tid, f.type, f.payload)));
      const d = new FrameDecoder();
      const got: Frame[] = [];
      for (const c of chunk(stream, cuts)) got.push(...d.push(c));
      return (
        got.length === frames.length &&
        got.every((g, i) => g.tid === frames[i].tid && g.type === frames[i].type && Buffer.compare(g.payload, frames[i].payload) === 0) &&
        d.bufferedBytes === 0
      );
    }),
    { numRuns: RUNS },
  );
  t.pass();
});

t.test('garbage yields frames or a ProtocolError, and never buffers past the limit', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (chunks) => {
      const d = new FrameDecoder({ maxFrameLength: 256 });
      try {
        for (const c of chunks) {
          d.push(c);
          if (d.bufferedBytes > 256 + 8 + 64) return false;
        }
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
      }
      return true;
    }),
    { numRuns: RUNS * 3 },
  );
  t.pass();
});
