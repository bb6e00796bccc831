/**
 * The order machine's I/O: the durable "recently executed" lookup (spec §5.4) and execution
 * through OrderExecutor. Outcomes are remembered per id; a rejected one under a prefix, so
 * a redelivered rejected order is rejected again rather than confirmed. Stopping the order
 * actor (the device closing) aborts the execution through the actor's signal.
 */
import { fromPromise } from 'xstate';
import type { ExecuteInput, OrderOutcome } from '../../machines/order.js';
import type { ExecutedOrders } from './executed-orders.js';
import type { ExecutionResult, OrderExecutor } from './executor.js';

const REJECTED = 'rejected:';

/** Why an execution counts as failed for good (the ORDER_REJECT reason). */
export function failureReason(result: ExecutionResult): string {
  const failed = result.outcomes.filter((o) => o.status === 'failed');
  const first = failed[0];
  const what = first ? `${first.order.type}${'path' in first.order ? ` ${first.order.path}` : ''}: ${first.error ?? first.code}` : 'failed';
  return failed.length > 1 ? `${what} (and ${failed.length - 1} more)` : what;
}

export function orderIo(executed: ExecutedOrders, executor: OrderExecutor) {
  return {
    checkExecuted: fromPromise<OrderOutcome | null, { id: string }>(async ({ input }) => {
      if (executed.has(input.id)) return 'acked';
      return executed.has(REJECTED + input.id) ? 'rejected' : null;
    }),
    execute: fromPromise<void, ExecuteInput>(async ({ input, signal }) => {
      const result = await executor.execute({ id: input.id, sections: input.sections, skipped: input.skipped }, { signal });
      if (!result.ok) throw new Error(failureReason(result));
    }),
    recordOutcome: fromPromise<void, { id: string; outcome: OrderOutcome }>(async ({ input }) => {
      executed.remember(input.outcome === 'acked' ? input.id : REJECTED + input.id);
    }),
  };
}
