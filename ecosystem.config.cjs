// PM2 (SPEC §10): the master in fork mode. It sends 'ready' over IPC once it
// listens (wait_ready), and drains on SIGINT/SIGTERM for up to
// limits.shutdownTimeoutMs (30 s by default), so kill_timeout sits above it and
// `pm2 reload graygate` is graceful. Workers are the master's own children:
// never run it in PM2 cluster mode.
module.exports = {
  apps: [
    {
      name: 'graygate',
      script: 'dist/master/main.js',
      args: '--config config/graygate.json',
      exec_mode: 'fork',
      instances: 1,
      wait_ready: true,
      listen_timeout: 30000,
      kill_timeout: 35000,
      shutdown_with_message: false,
      env: { NODE_ENV: 'production' },
    },
  ],
};
