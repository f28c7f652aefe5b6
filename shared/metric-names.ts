// Every metric name and fixed label value in one module (STYLE §3), exactly as
// SPEC §9 names them. The master, the workers, `graygate top` and the tests
// all read these, so a rename is one edit.
export const METRIC = {
  // master
  requestsTotal: 'graygate_requests_total',
  requestDurationSeconds: 'graygate_request_duration_seconds',
  queueDepth: 'graygate_queue_depth',
  rejectedTotal: 'graygate_rejected_total',
  /**
   * Not in SPEC §9's list: requests a version failed, as the canary counts them (SPEC §11), by kind (ERROR_KINDS):
   * a 5xx, a stream that failed after its 200 (`requests_total` counts it under 200), or a request its client gave up
   * waiting for (before its headers: code 0 there; a stream left before its first content: 200). `graygate top`'s ERR%
   * is this over requests_total.
   */
  requestErrorsTotal: 'graygate_request_errors_total',
  workers: 'graygate_workers',
  workerRestartsTotal: 'graygate_worker_restarts_total',
  /**
   * Not in SPEC §9's list: 1 when a worker answered the last /metrics
   * scrape in time, 0 when its series are missing (issue 5).
   */
  workerScrapeUp: 'graygate_worker_scrape_up',
  /**
   * Issue 9 part 3: from the IPC health probe, so a stuck or bloated worker shows even when it cannot answer a scrape.
   */
  workerRssBytes: 'graygate_worker_rss_bytes',
  workerEventLoopDelaySeconds: 'graygate_worker_event_loop_delay_seconds',
  workerHealthMisses: 'graygate_worker_health_misses',
  /** Bytes of request bodies the master holds (limits.maxBufferedBodyBytes bounds it). */
  bufferedBodyBytes: 'graygate_buffered_body_bytes',
  /** SPEC §13: 1, labelled with the applied config file's hash; more than one hash across pods means they disagree. */
  configInfo: 'graygate_config_info',
  /**
   * Whether the last reload (POST /admin/reload, SIGHUP, config.watch) applied its file (1) or was refused (0), and
   * when one last applied, as Prometheus's own `prometheus_config_last_reload_*`: pods that all refuse the same file
   * keep one hash, which graygate_config_info cannot tell from a file applied everywhere.
   */
  configLastReloadSuccessful: 'graygate_config_last_reload_successful',
  configLastReloadSuccessTimestampSeconds: 'graygate_config_last_reload_success_timestamp_seconds',
  /**
   * Not in SPEC §9's list: the main port's open connections; those accepted past limits.maxClientConnections
   * (their requests answered 503 too_many_connections), and those closed as they came past these.
   */
  clientConnections: 'graygate_client_connections',
  clientConnectionsPastBoundTotal: 'graygate_client_connections_past_bound_total',
  clientConnectionsDroppedTotal: 'graygate_client_connections_dropped_total',
  clientConnectionsClosedIdleTotal: 'graygate_client_connections_closed_idle_total',
  clientConnectionsRefusedPerAddressTotal: 'graygate_client_connections_refused_per_address_total',
  /** SPEC §11: the canary's share of its pair's weight, and its state (1 for the current one). */
  canaryPercent: 'graygate_canary_percent',
  canaryState: 'graygate_canary_state',
  /** 1 while a held canary waits for its operator (paused by hand or at a step of pauseAt), 0 while held otherwise. */
  canaryPaused: 'graygate_canary_paused',
  /** Canaries ended since the master started, by version and state (promoted, rolled_back, aborted): to alert on. */
  canaryEndedTotal: 'graygate_canary_ended_total',
  /** A running or held canary's latest verdict per criterion at its current step: 1 for it, 0 for the others. */
  canaryVerdict: 'graygate_canary_verdict',
  // workers
  streamFirstTokenSeconds: 'graygate_stream_first_token_seconds',
  streamsActive: 'graygate_streams_active',
  upstreamErrorsTotal: 'graygate_upstream_errors_total',
  tokensTotal: 'graygate_tokens_total',
  /** Bytes of answers a worker holds whole (limits.maxBufferedAnswerBytes bounds it). */
  bufferedAnswerBytes: 'graygate_buffered_answer_bytes',
} as const;

/**
 * `version` label of requests that got no version: a malformed or unknown
 * version (400/404) or a gateway shutting down. Never the name the client
 * sent, which would let any client mint new series.
 */
export const NO_VERSION = 'none';

/** `worker` label of the master's own per-process series (default process metrics). */
export const MASTER_WORKER_LABEL = 'master';

/** `kind` of graygate_upstream_errors_total (issue 5 part 2). */
export const UPSTREAM_ERROR_KINDS = ['connect', 'timeout', 'reset', 'status', 'protocol'] as const;
export type UpstreamErrorKind = (typeof UPSTREAM_ERROR_KINDS)[number];

/** `kind` of graygate_tokens_total, from the upstream's usage. */
export const TOKEN_KINDS = ['prompt', 'completion'] as const;

/**
 * Resolution of every event-loop delay monitor (prom-client's
 * nodejs_eventloop_lag_* and the worker's health figure), ms. A monitor is a
 * timer that fires this often whether or not anything happens, and on this
 * kind of VM each wakeup of an idle process costs ~0.1 ms of CPU: prom-client's
 * default 10 ms cost 17 ms of CPU a second per process at rest, the worker's
 * 20 ms another 6 (issue 10, docs/BENCHMARKS.md "Wakeups at rest").
 * node's monitor records the whole time between two samples, so an idle
 * process reads this value; a stall of S ms reads between S and S + this
 * value, and stalls shorter than it may not show at all. prom-client's series
 * are reported as node gives them; the worker's health figure has the
 * resolution taken off (shared/worker-lifecycle.ts).
 */
export const LOOP_DELAY_RESOLUTION_MS = 50;

/** graygate_request_errors_total's kinds. */
export const ERROR_KINDS = ['5xx', 'stream_failed', 'abandoned'] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];
