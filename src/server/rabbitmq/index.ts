/**
 * `ngtt/server/rabbitmq`: the server's Store on RabbitMQ (`openRabbitStore`, what `ngtt server
 * --store rabbitmq` runs) and its building blocks for a stateless NGTT gateway fleet (issue #8, docs/rabbitmq.md).
 *
 *   const rabbit = await openRabbitBackbone({ url, prefix: 'ngtt' });
 *   await rabbit.orders.enqueueOrder(deviceId, sections);            // admin side, any gateway
 *   const src = await rabbit.orders.openOrderSource(deviceId, { window: 4 });
 *   await rabbit.publisher.publishPathpoints(deviceId, series);      // then DATA_STREAM_CONFIRM
 *   const sink = await Sink.start(rabbit.connection, { onPathpoints, onLogs }, { topology: rabbit.topology });
 */
import { BrokerConnection, type BrokerConnectionOptions } from './connection.js';
import { OrderQueues, type AuditMode } from './order-queue.js';
import { ConfirmingPublisher } from './publisher.js';
import { topology as makeTopology, type Topology, type TopologyOptions } from './topology.js';

export * from './connection.js';
export * from './channel.js';
export * from './topology.js';
export * from './publisher.js';
export * from './order-queue.js';
export * from './sink.js';
export * from './store.js';
export * from './baob-rpc.js';

export interface RabbitBackboneOptions extends BrokerConnectionOptions, TopologyOptions {
  /** Which settled orders go to `<prefix>.orders.settled`. Default 'rejected'. */
  audit?: AuditMode;
}

export interface RabbitBackbone {
  readonly connection: BrokerConnection;
  readonly topology: Topology;
  readonly publisher: ConfirmingPublisher;
  readonly orders: OrderQueues;
  /** Closes the publisher and the connection (order sources and sinks close with it). */
  close(): Promise<void>;
}

/** One connection, the shared topology declared, a confirming publisher and the order queues. */
export async function openRabbitBackbone(options: RabbitBackboneOptions = {}): Promise<RabbitBackbone> {
  const connection = await BrokerConnection.open(options);
  try {
    const topology = makeTopology(options);
    const publisher = await ConfirmingPublisher.open(connection, { topology });
    const orders = new OrderQueues(connection, { topology, publisher, audit: options.audit });
    return {
      connection,
      topology,
      publisher,
      orders,
      async close() {
        await publisher.close();
        await connection.close();
      },
    };
  } catch (err) {
    await connection.close();
    throw err;
  }
}
export * from './store.js';
