// Every metric name in one module (STYLE §3), exactly as SPEC §9 names them.
export const METRIC = {
  requestsTotal: 'graygate_requests_total',
  requestDurationSeconds: 'graygate_request_duration_seconds',
  queueDepth: 'graygate_queue_depth',
  rejectedTotal: 'graygate_rejected_total',
  workers: 'graygate_workers',
  workerRestartsTotal: 'graygate_worker_restarts_total',
  streamFirstTokenSeconds: 'graygate_stream_first_token_seconds',
  streamsActive: 'graygate_streams_active',
  upstreamErrorsTotal: 'graygate_upstream_errors_total',
  tokensTotal: 'graygate_tokens_total',
} as const;
