/**
 * Names and declarations of everything NGTT puts on RabbitMQ. All declarations are idempotent
 * (same arguments every time), so every gateway declares what it uses whenever it (re)opens a
 * channel; no separate provisioning step is needed.
 *
 *   <prefix>.orders.<deviceId>   quorum queue per device, single active consumer
 *   <prefix>.orders.settled      topic exchange + quorum queue: audit of settled orders
 *   <prefix>.pathpoints          topic exchange (routing key = device id) + quorum queue
 *   <prefix>.logs                topic exchange (routing key = device id) + bounded classic queue
 */
import type { Channel } from 'amqplib';

export const MINIJSON_CONTENT_TYPE = 'application/minijson';

/** Headers our messages carry. */
export const HEADER_DEVICE = 'x-ngtt-device';
export const HEADER_OUTCOME = 'x-ngtt-outcome';
export const HEADER_REASON = 'x-ngtt-reason';
/** A message order's uuid, on `received` events (the device received that message). */
export const HEADER_MESSAGE = 'x-ngtt-message';
/** On settlement events: how many times the order has been delivered to the device, this delivery included. */
export const HEADER_DELIVERIES = 'x-ngtt-deliveries';

export type OrderQueueType = 'quorum' | 'classic';

export interface TopologyOptions {
  /**
   * Queue type of the per-device order queues. Default 'quorum' (replicated, Raft). 'classic'
   * (version 2) costs about a third of the memory and no Raft, but is not replicated: see the
   * scale note in docs/rabbitmq.md. Both keep single-active-consumer and return unsettled
   * orders to the front.
   */
  orderQueueType?: OrderQueueType;
  /** Name prefix for every queue and exchange. Default `ngtt`. Tests use a random one. */
  prefix?: string;
  /**
   * `x-delivery-limit` for the per-device order queues. Unset by default, on purpose: on
   * RabbitMQ 3.x every return (also a closed channel, i.e. a device that disconnected with
   * orders in flight) counts as a delivery, so a limit would drop orders of devices with flaky
   * links. On RabbitMQ ≥ 4.0, where quorum queues default to a limit of 20, pass -1 (unlimited).
   */
  orderDeliveryLimit?: number;
  /** Bound on the logs queue (messages); the oldest are dropped beyond it. Default 1 000 000. */
  logsMaxLength?: number;
  /** Replicas of each quorum queue (`x-quorum-initial-group-size`). Default: the broker's (3). */
  quorumGroupSize?: number;
}

export interface Topology {
  readonly prefix: string;
  ordersQueue(deviceId: string): string;
  readonly settledExchange: string;
  readonly settledQueue: string;
  readonly pathpointsExchange: string;
  readonly pathpointsQueue: string;
  readonly logsExchange: string;
  readonly logsQueue: string;
  /** Arguments of a device's order queue; identical on every declare. */
  readonly orderQueueArgs: Record<string, unknown>;
  readonly options: Readonly<TopologyOptions>;
}

/** Device ids go into queue names: at most 255 bytes in all, so long or odd ids are refused. */
export function checkDeviceId(deviceId: string): void {
  if (typeof deviceId !== 'string' || deviceId.length === 0 || Buffer.byteLength(deviceId) > 200) {
    throw new RangeError(`device id must be a non-empty string of at most 200 bytes, got ${JSON.stringify(deviceId)}`);
  }
}

export function topology(options: TopologyOptions = {}): Topology {
  const prefix = options.prefix ?? 'ngtt';
  const quorum = (options.orderQueueType ?? 'quorum') === 'quorum';
  const orderQueueArgs: Record<string, unknown> = quorum
    ? { 'x-queue-type': 'quorum', 'x-single-active-consumer': true }
    : { 'x-queue-type': 'classic', 'x-queue-version': 2, 'x-single-active-consumer': true };
  if (quorum && options.orderDeliveryLimit !== undefined) orderQueueArgs['x-delivery-limit'] = options.orderDeliveryLimit;
  if (quorum && options.quorumGroupSize !== undefined) orderQueueArgs['x-quorum-initial-group-size'] = options.quorumGroupSize;
  return {
    prefix,
    ordersQueue: (deviceId) => {
      checkDeviceId(deviceId);
      return `${prefix}.orders.${deviceId}`;
    },
    settledExchange: `${prefix}.orders.settled`,
    settledQueue: `${prefix}.orders.settled`,
    pathpointsExchange: `${prefix}.pathpoints`,
    pathpointsQueue: `${prefix}.pathpoints`,
    logsExchange: `${prefix}.logs`,
    logsQueue: `${prefix}.logs`,
    orderQueueArgs,
    options: { ...options },
  };
}

function quorumArgs(t: Topology): Record<string, unknown> {
  const args: Record<string, unknown> = { 'x-queue-type': 'quorum' };
  if (t.options.quorumGroupSize !== undefined) args['x-quorum-initial-group-size'] = t.options.quorumGroupSize;
  return args;
}

/**
 * Declares the shared exchanges and queues (not the per-device ones). A channel error here
 * (PRECONDITION_FAILED: a queue exists with other arguments) closes the channel; the caller
 * should use a channel it can lose.
 */
export async function declareSharedTopology(ch: Channel, t: Topology): Promise<void> {
  await ch.assertExchange(t.settledExchange, 'topic', { durable: true });
  await ch.assertQueue(t.settledQueue, { durable: true, arguments: quorumArgs(t) });
  await ch.bindQueue(t.settledQueue, t.settledExchange, '#');

  await ch.assertExchange(t.pathpointsExchange, 'topic', { durable: true });
  await ch.assertQueue(t.pathpointsQueue, { durable: true, arguments: quorumArgs(t) });
  await ch.bindQueue(t.pathpointsQueue, t.pathpointsExchange, '#');

  await ch.assertExchange(t.logsExchange, 'topic', { durable: true });
  await ch.assertQueue(t.logsQueue, {
    durable: true,
    arguments: {
      'x-queue-type': 'classic',
      'x-queue-version': 2,
      'x-max-length': t.options.logsMaxLength ?? 1_000_000,
      'x-overflow': 'drop-head',
    },
  });
  await ch.bindQueue(t.logsQueue, t.logsExchange, '#');
}

/** Declares a device's order queue (idempotent). */
export async function declareOrderQueue(ch: Channel, t: Topology, deviceId: string): Promise<string> {
  const q = t.ordersQueue(deviceId);
  await ch.assertQueue(q, { durable: true, arguments: t.orderQueueArgs });
  return q;
}

/** Deletes the shared topology (tests, teardown). Per-device queues are deleted one by one. */
export async function deleteSharedTopology(ch: Channel, t: Topology): Promise<void> {
  for (const q of [t.settledQueue, t.pathpointsQueue, t.logsQueue]) await ch.deleteQueue(q);
  for (const x of [t.settledExchange, t.pathpointsExchange, t.logsExchange]) await ch.deleteExchange(x);
}
