// The CLI's view of the admin API (SPEC §6–§7): one request, one typed outcome.

export interface AdminClientOptions {
  /** Base URL of the admin port; default http://127.0.0.1:9000. */
  adminUrl: string;
  /** Bearer token (GRAYGATE_ADMIN_TOKEN); absent: no Authorization header. */
  token: string | undefined;
}

export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

export const EXIT = { apiError: 1, usage: 64, unreachable: 69 } as const;

export async function callAdmin<T>(options: AdminClientOptions, method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (options.token !== undefined && options.token !== '') headers['authorization'] = `Bearer ${options.token}`;
  const init: RequestInit = { method, headers };
  // SPEC §6: state-changing admin calls must be JSON (no cross-site "simple" request is).
  if (method !== 'GET' && method !== 'HEAD') headers['content-type'] = 'application/json';
  if (body !== undefined) init.body = JSON.stringify(body);
  let res: Response;
  try {
    res = await fetch(new URL(path, options.adminUrl), init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new CliError(`admin API unreachable at ${options.adminUrl} (${cause}); is graygate running? (--admin URL)`, EXIT.unreachable);
  }
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Prometheus text or an empty body: keep the text.
  }
  if (!res.ok) {
    const error = (parsed as { error?: { code?: string; message?: string } }).error;
    const message = error?.message?.split('\n').join('; ') ?? text;
    throw new CliError(`${res.status} ${error?.code ?? 'error'}: ${message}`, EXIT.apiError);
  }
  return parsed as T;
}
