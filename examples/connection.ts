import { NgttConnection } from 'ngtt';

const c = await NgttConnection.connect({
  host: process.env.NGTT_HOST ?? 'localhost', port: Number(process.env.NGTT_PORT ?? 2405),
  ca: 'pki/ca.crt', cert: 'pki/devices/boiler-1.crt', key: 'pki/devices/boiler-1.key',
});
c.onOrder((order) => {
  console.log('order', order.id, JSON.stringify(order.sections));
  order.ack();                                     // after running it; or order.nack('reason')
});
await c.syncPathpoints([{ path: 'W1', values: [[Date.now(), 42]] }]); // resolves on DATA_STREAM_CONFIRM
c.streamLogs([{ service: 'boiler', when: Date.now() * 1000, message: 'started', level: 20 }]);

process.once('SIGTERM', () => void c.close());
