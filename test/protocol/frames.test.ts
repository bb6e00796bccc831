import t from 'tap';
import { decode, encode } from '../../src/minijson/index.js';
import {
  encodeFrame,
  encodeValueFrame,
  FrameDecoder,
  FrameType,
  frameTypeName,
  HEADER_SIZE,
  ProtocolError,
  type Frame,
} from '../../src/protocol/index.js';

t.test('frame types are the 11 of the spec', async (t) => {
  t.same(Object.values(FrameType), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  t.equal(frameTypeName(4), 'DATA_STREAM');
  t.equal(frameTypeName(99), 'UNKNOWN(99)');
});

t.test('header layout is big-endian length, tid, type', async (t) => {
  const f = encodeFrame(0x1234, FrameType.DATA_STREAM, Buffer.from([1, 2, 3]));
  t.equal(f.toString('hex'), '00000003' + '1234' + '0004' + '010203');
  t.equal(encodeFrame(7, FrameType.PING).toString('hex'), '00000000' + '0007' + '0000');
});

t.test('encodeValueFrame puts the MiniJSON payload behind the header', async (t) => {
  const value = [{ path: 'W1', values: [[1600000000000, 5]] }];
  const f = encodeValueFrame(3, FrameType.DATA_STREAM, value);
  t.equal(f.readUInt32BE(0), f.length - HEADER_SIZE);
  t.same(Buffer.from(f.subarray(HEADER_SIZE)), Buffer.from(encode(value)));
  t.same(decode(f.subarray(HEADER_SIZE)), value);
  t.throws(() => encodeFrame(0x10000, 0), RangeError);
});

function stream(): { bytes: Buffer; frames: Frame[] } {
  const frames: Frame[] = [];
  for (let i = 0; i < 50; i++) {
    const payload = i % 5 === 0 ? Buffer.alloc(0) : Buffer.from(encode({ i, s: 'x'.repeat(i * 7) }));
    frames.push({ tid: i + 1, type: i % 11, payload });
  }
  return { bytes: Buffer.concat(frames.map((f) => encodeFrame(f.tid, f.type, f.payload))), frames };
}

const plain = (fs: Frame[]) => fs.map((f) => ({ tid: f.tid, type: f.type, payload: f.payload.toString('hex') }));

t.test('decoder yields the same frames however the stream is chunked', async (t) => {
  const { bytes, frames } = stream();
  for (const size of [1, 2, 3, 7, 8, 9, 64, 1000, bytes.length]) {
    const d = new FrameDecoder();
    const got: Frame[] = [];
    for (let i = 0; i < bytes.length; i += size) got.push(...d.push(bytes.subarray(i, i + size)));
    t.same(plain(got), plain(frames), `chunks of ${size}`);
    t.equal(d.bufferedBytes, 0);
  }
});

t.test('an oversized header is an error before its payload is buffered', async (t) => {
  const d = new FrameDecoder({ maxFrameLength: 1024 });
  const header = Buffer.alloc(8);
  header.writeUInt32BE(1025, 0);
  t.throws(() => d.push(header), { name: 'ProtocolError', code: 'FRAME_TOO_LARGE' });
  t.equal(d.bufferedBytes, 0);
  t.throws(() => d.push(Buffer.alloc(4)), ProtocolError, 'stays failed');
  // The default limit is 16 MiB: a header claiming 4 GiB fails at once.
  const d2 = new FrameDecoder();
  t.throws(() => d2.push(Buffer.from('ffffffff00010004', 'hex')), ProtocolError);
});

t.test('a partial frame waits for the rest', async (t) => {
  const d = new FrameDecoder();
  const f = encodeFrame(9, FrameType.LOGS, Buffer.from('abcdef'));
  t.same(d.push(f.subarray(0, 10)), []);
  t.equal(d.bufferedBytes, 10);
  const [got] = d.push(f.subarray(10));
  t.equal(got.payload.toString(), 'abcdef');
});
