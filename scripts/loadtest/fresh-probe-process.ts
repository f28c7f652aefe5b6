import { startFreshProbes } from './fresh-probe.js';

// The fresh-connection prober of `backlog` in its own process (issue 10): in
// the scenario's process its timings would include the event-loop lag of the
// autocannon flood running there. Reads FRESH_PROBE_URL and FRESH_PROBE_EVERY_MS,
// probes until it gets 'stop' over IPC, then sends {type:'fresh', result} and exits.

const abort = new AbortController();
const prober = startFreshProbes({
  url: process.env['FRESH_PROBE_URL'] ?? '',
  everyMs: Number(process.env['FRESH_PROBE_EVERY_MS'] ?? 50),
  signal: abort.signal,
});
process.on('message', (msg) => {
  if (msg !== 'stop') return;
  void prober.stop().then((result) => process.send?.({ type: 'fresh', result }, undefined, {}, () => process.exit(0)));
});
// Our parent is the load script: if it goes, so do we.
process.on('disconnect', () => {
  abort.abort();
  process.exit(0);
});
