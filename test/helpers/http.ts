import { request, type IncomingHttpHeaders, type Agent } from 'node:http';

export interface SimpleResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface GetOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Default: a fresh connection per request (no keep-alive), so tests never share sockets. */
  agent?: Agent | false;
}

/** One HTTP request with node:http; resolves with status, headers and the whole body. */
export function httpRequest(url: string, options: GetOptions = {}): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'GET', headers: options.headers ?? {}, agent: options.agent ?? false },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export function json<T = Record<string, unknown>>(res: SimpleResponse): T {
  return JSON.parse(res.body) as T;
}
