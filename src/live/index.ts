/**
 * ngtt/live: a local live view of devices and their machines for development (no internet
 * needed). Needs the optional peer `mermaid` for the state charts; without it the page shows
 * the active states as text.
 *
 *   const live = await startLiveView({ adminUrl: 'http://127.0.0.1:8444' });
 *   const device = new NgttDevice({ ...options, live });
 *   console.log(`live view: ${live.url}`);
 */
export { startLiveView, type LiveView, type LiveViewOptions } from './server.js';
export { ListenError, listenOnLoopback } from './listen.js';
export { ActorBoard, type ActorView, type ActorEventView, type ActorBoardOptions } from './actors.js';
export { OrderTimeline, describeOrder, type TimelineEntry, type OrderTimelineOptions, type ServerOrderState } from './orders.js';
export { stateChart, activePaths, eventLabel, type StateChart } from './state-chart.js';
