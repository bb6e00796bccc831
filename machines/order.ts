/**
 * One order's life (spec §5.3–5.4, §6): one actor per ORDER frame or per HTTPS poll response.
 *
 *   received ─┬─(payload not a list of sections)──────────────────────────────▶ rejected
 *             ├─(has a stable id)─▶ checking ─(seen: acked before)─────────────▶ acked    (not run again)
 *             │                        │      (seen: rejected before)──────────▶ rejected (not run again)
 *             │                        ▼ (new, or the lookup failed)
 *             └──────────────────▶ executing ─(done)──▶ recording ─▶ acked
 *                                             (failed for good)──▶ recording ─▶ rejected
 *
 * - `checkExecuted` (provided promise actor) is the "recent ids" lookup, durable in the runtime.
 *   If it fails the order runs: executing twice is the lesser evil than never.
 * - `execute` (provided promise actor) runs the sections in order; resolving means done,
 *   rejecting means failed for good (its message becomes the ORDER_REJECT reason).
 * - `recordOutcome` (provided promise actor) stores the id with its outcome BEFORE the ack is
 *   requested, so a redelivery caused by a lost ack is recognised. A failure to record does not
 *   hold the ack back: an ack that arrives makes the record unnecessary.
 * - Entering `executing` is reported as ORDER.EXECUTING; the final states request the ack/reject
 *   as ORDER.DONE (both with the `report` action, default: sendParent). The parent sends ORDER_CONFIRM/ORDER_REJECT only on the connection the order
 *   came in on (`epoch`), and only if it is still live; otherwise the server redelivers the order
 *   and `checkExecuted` catches it. Orders polled over HTTPS are never acknowledged (§9).
 * - REDELIVERED {tid, epoch}: the server sent this same order again (a reconnect happened while
 *   it ran); the ack then goes with the new tid on the new connection.
 * - Stopping the actor (device closing) aborts `execute` through its AbortSignal: handlers and
 *   `wait` orders stop; the order is not acknowledged, so the server delivers it again.
 */
import { assign, fromPromise, sendParent, setup } from 'xstate';
import { errorText } from './common.js';
import { type Section, parseSections } from '../src/protocol/messages.js';

export type OrderOutcome = 'acked' | 'rejected';

export interface OrderInput {
  /** Unique among live order actors; the supervisor uses it as the child id. */
  key: string;
  via: 'ngtt' | 'https';
  /** ORDER frame tid (NGTT only). */
  tid?: number;
  /** Connection epoch the ORDER frame came in on (NGTT only). */
  epoch?: number;
  /** The ORDER payload or HTTPS poll response, decoded: a list of sections. */
  payload: unknown;
}

export interface OrderContext {
  key: string;
  via: 'ngtt' | 'https';
  tid?: number;
  epoch?: number;
  /** The stable id from the server's store, when it sent one. */
  id?: string;
  sections: Section[];
  /** Orders left out as malformed or of unknown type (spec §6: skip and log). */
  skipped: { at: string; reason: string; order: unknown }[];
  outcome?: OrderOutcome;
  reason?: string;
  /** False when the outcome came from the recent-ids lookup (a redelivery) or the payload was malformed. */
  executed: boolean;
}

export type OrderEvent = { type: 'REDELIVERED'; tid: number; epoch: number };

/** What the order reports when it is finished. */
export interface OrderDoneReport {
  type: 'ORDER.DONE';
  key: string;
  id?: string;
  via: 'ngtt' | 'https';
  tid?: number;
  epoch?: number;
  outcome: OrderOutcome;
  reason?: string;
  executed: boolean;
}

/** What the order reports (the `report` action). */
export type OrderReport = { type: 'ORDER.EXECUTING'; key: string; id?: string } | OrderDoneReport;

export interface ExecuteInput {
  key: string;
  id?: string;
  sections: Section[];
  skipped: OrderContext['skipped'];
}

/** The stable id in an ORDER payload, if any (undefined for a malformed payload). */
export function orderIdOf(payload: unknown): string | undefined {
  try {
    return parseSections(payload).id;
  } catch {
    return undefined;
  }
}

function parse(payload: unknown): Pick<OrderContext, 'id' | 'sections' | 'skipped' | 'reason'> {
  try {
    const { id, sections, skipped } = parseSections(payload);
    return { id, sections, skipped };
  } catch (e) {
    return { sections: [], skipped: [], reason: `malformed order: ${(e as Error).message}` };
  }
}

export const orderMachine = setup({
  types: {
    context: {} as OrderContext,
    events: {} as OrderEvent,
    input: {} as OrderInput,
  },
  actors: {
    checkExecuted: fromPromise<OrderOutcome | null, { id: string }>(async () => {
      throw new Error('order machine: provide the `checkExecuted` actor');
    }),
    execute: fromPromise<void, ExecuteInput>(async () => {
      throw new Error('order machine: provide the `execute` actor');
    }),
    recordOutcome: fromPromise<void, { id: string; outcome: OrderOutcome }>(async () => {
      throw new Error('order machine: provide the `recordOutcome` actor');
    }),
  },
  actions: {
    report: sendParent((_, params: OrderReport) => params),
  },
  guards: {
    malformed: ({ context }) => context.reason !== undefined,
    hasId: ({ context }) => context.id !== undefined,
  },
}).createMachine({
  id: 'order',
  context: ({ input }) => ({
    key: input.key,
    via: input.via,
    tid: input.tid,
    epoch: input.epoch,
    executed: false,
    ...parse(input.payload),
  }),
  on: {
    REDELIVERED: { actions: assign(({ event }) => ({ tid: event.tid, epoch: event.epoch })) },
  },
  initial: 'received',
  states: {
    received: {
      always: [
        { guard: 'malformed', target: 'rejected' },
        { guard: 'hasId', target: 'checking' },
        { target: 'executing' },
      ],
    },
    checking: {
      invoke: {
        src: 'checkExecuted',
        input: ({ context }) => ({ id: context.id! }),
        onDone: [
          { guard: ({ event }) => event.output === 'acked', target: 'acked' },
          {
            guard: ({ event }) => event.output === 'rejected',
            target: 'rejected',
            actions: assign({ reason: 'rejected before' }),
          },
          { target: 'executing' },
        ],
        onError: 'executing',
      },
    },
    executing: {
      entry: { type: 'report', params: ({ context }) => ({ type: 'ORDER.EXECUTING', key: context.key, id: context.id }) },
      invoke: {
        src: 'execute',
        input: ({ context }) => ({ key: context.key, id: context.id, sections: context.sections, skipped: context.skipped }),
        onDone: { target: 'recording', actions: assign({ outcome: 'acked', executed: true }) },
        onError: {
          target: 'recording',
          actions: assign(({ event }) => ({ outcome: 'rejected' as const, reason: errorText(event.error), executed: true })),
        },
      },
    },
    recording: {
      always: { guard: ({ context }) => context.id === undefined, target: 'outcome' },
      invoke: {
        src: 'recordOutcome',
        input: ({ context }) => ({ id: context.id!, outcome: context.outcome! }),
        onDone: 'outcome',
        onError: 'outcome',
      },
    },
    outcome: {
      always: [{ guard: ({ context }) => context.outcome === 'acked', target: 'acked' }, { target: 'rejected' }],
    },
    acked: {
      type: 'final',
      entry: [assign({ outcome: 'acked' }), { type: 'report', params: ({ context }) => done(context, 'acked') }],
    },
    rejected: {
      type: 'final',
      entry: [assign({ outcome: 'rejected' }), { type: 'report', params: ({ context }) => done(context, 'rejected') }],
    },
  },
});

function done(c: OrderContext, outcome: OrderOutcome): OrderDoneReport {
  return { type: 'ORDER.DONE', key: c.key, id: c.id, via: c.via, tid: c.tid, epoch: c.epoch, outcome, reason: c.reason, executed: c.executed };
}
