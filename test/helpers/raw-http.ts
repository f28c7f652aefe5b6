import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

// Raw HTTP/1.1 over a socket, for the tests an HTTP client refuses to write:
// smuggling attempts, pipelining, slow bodies, oversized heads. Responses are
// parsed just enough for tests: status, headers, and a body framed by
// Content-Length, chunked encoding, or the connection's end.

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface RawConnection {
  socket: Socket;
  /** Responses parsed so far, in order (1xx informational ones included). */
  responses: RawResponse[];
  /** Resolves once `n` final (non-1xx) responses arrived, or rejects if the socket closes first. */
  waitFor(n: number): Promise<RawResponse[]>;
  /** Resolves when the server closed the connection. */
  closed: Promise<void>;
  write(data: string | Buffer): void;
}

/**
 * Opens a connection to `url`'s host and port. `methods` are the methods of the
 * requests that will be sent, in order (a HEAD response has no body). `localAddress`: the client's
 * own (on Linux every 127.x.y.z is loopback: 127.0.0.2 is another client).
 */
export async function openRaw(url: string, methods: string[] = [], localAddress?: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  const socket = connect({ port: Number(port), host: hostname, localAddress });
  await once(socket, 'connect');
  const responses: RawResponse[] = [];
  let buffer = Buffer.alloc(0);
  let isClosed = false;
  const waiters: Array<() => void> = [];
  const finals = (): RawResponse[] => responses.filter((r) => r.status >= 200);
  const notify = (): void => {
    for (const w of waiters.splice(0)) w();
  };

  const parse = (atEnd: boolean): void => {
    for (;;) {
      const headEnd = buffer.indexOf('\r\n\r\n');
      if (headEnd === -1) return;
      const head = buffer.subarray(0, headEnd).toString('latin1').split('\r\n');
      const status = Number(head[0]!.split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      let rest = buffer.subarray(headEnd + 4);
      if (status < 200) {
        responses.push({ status, headers, body: '' });
        buffer = rest;
        continue;
      }
      const method = methods[finals().length] ?? 'GET';
      let body: Buffer;
      if (method === 'HEAD' || status === 204 || status === 304) {
        body = Buffer.alloc(0);
      } else if (headers['content-length'] !== undefined) {
        const length = Number(headers['content-length']);
        if (rest.length < length) return;
        body = rest.subarray(0, length);
        rest = rest.subarray(length);
      } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
        const parts: Buffer[] = [];
        let at = 0;
        for (;;) {
          const lineEnd = rest.indexOf('\r\n', at);
          if (lineEnd === -1) return;
          const size = parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16);
          // Not a chunk's size line (another answer's head inside this one): left unparsed, not looped on for ever.
          if (Number.isNaN(size)) return;
          if (rest.length < lineEnd + 2 + size + 2) return;
          if (size === 0) {
            at = lineEnd + 4;
            break;
          }
          parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
          at = lineEnd + 2 + size + 2;
        }
        body = Buffer.concat(parts);
        rest = rest.subarray(at);
      } else {
        if (!atEnd) return;
        body = rest;
        rest = Buffer.alloc(0);
      }
      responses.push({ status, headers, body: body.toString('utf8') });
      buffer = rest;
    }
  };

  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    parse(false);
    notify();
  });
  const closed = new Promise<void>((resolve) => {
    socket.once('close', () => {
      isClosed = true;
      parse(true);
      notify();
      resolve();
    });
  });
  socket.on('error', () => undefined);

  return {
    socket,
    responses,
    closed,
    write: (data) => socket.write(data),
    waitFor(n) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const done = finals();
          if (done.length >= n) return resolve(done);
          if (isClosed) return reject(new Error(`connection closed after ${done.length} of ${n} responses`));
          waiters.push(check);
        };
        check();
      });
    },
  };
}

/** One request written raw on a fresh connection; resolves with the first final response. */
export async function rawRequest(url: string, request: string | Buffer, method = 'GET'): Promise<RawResponse> {
  const conn = await openRaw(url, [method]);
  conn.write(request);
  try {
    const [response] = await conn.waitFor(1);
    return response!;
  } finally {
    conn.socket.destroy();
  }
}
