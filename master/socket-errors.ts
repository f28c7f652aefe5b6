import type { Duplex } from 'node:stream';

// Why a client's connection ended under its request, for the access log (main-server.ts records it, request-end.ts
// reads it): `aborted: true` alone did not tell a client that closed from one whose network died (`ETIMEDOUT`: the
// kernel's keepalive probes or retransmissions went unanswered) or that reset (`ECONNRESET`).

const codes = new WeakMap<Duplex, string>();

export function setSocketErrorCode(socket: Duplex, code: string): void {
  codes.set(socket, code);
}

export function socketErrorCodeOf(socket: Duplex | null): string | undefined {
  return socket === null ? undefined : codes.get(socket);
}
