import { EXIT } from './admin-client.js';

// `graygate top | head` (issue 12 part 6): Node ignores SIGPIPE, so a write
// to a pipe whose reader has gone fails with EPIPE, and an 'error' event
// nobody listens to ends the process with a stack trace. The reader leaving
// is the normal end of such a pipeline: exit at once, silently, with the
// code a shell reports for a writer killed by SIGPIPE (`yes | head`), so
// `set -o pipefail` scripts see what they see with any Unix tool.

/** Makes EPIPE on `streams` end the process quietly with 141; other stream errors stay fatal. */
export function exitQuietlyOnBrokenPipe(streams: readonly NodeJS.WritableStream[]): void {
  for (const stream of streams) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(EXIT.brokenPipe);
    });
  }
}
