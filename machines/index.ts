/**
 * Pure XState machines of the NGTT device: what happens, in which order, and what it needs done.
 * No I/O here: sockets, HTTP, SQLite and order execution are provided by the runtime
 * (src/device/) through `.provide({ actors, actions })`, and by fakes in test/machines/.
 *
 *   supervisor ─┬─ connection (NGTT only)   connection.ts
 *               ├─ upload (pathpoint data)  upload.ts  ─┐
 *               ├─ logs                     logs.ts    ─┼─ http.ts (one HTTPS request, retried)
 *               ├─ baob (BAOB sync)         baob.ts    ─┤
 *               ├─ config, declarations ────────────────┘
 *               └─ order × N                order.ts
 *
 * NgttConnection (NGTT alone) runs the connection and upload machines without a supervisor.
 * Shared vocabulary (frames, links, the one backoff, HTTPS outcomes, faults): common.ts.
 */
export * from './common.js';
export * from './connection.js';
export * from './http.js';
export * from './order.js';
export * from './upload.js';
export * from './logs.js';
export * from './baob.js';
export * from './supervisor.js';
