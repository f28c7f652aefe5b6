import type { IncomingMessage } from 'node:http';
import type { GraygateError } from '../shared/errors.js';

// SPEC §4a: a body Node's parser refused while its request waited for its turn on a pipelined connection
// (main-server.ts). The parser is done with that connection, so the body's bytes will never come: the gateway refuses
// the request when it would read them, as it does a malformed body it is reading, instead of waiting bodyTimeoutMs.

const errors = new WeakMap<IncomingMessage, GraygateError>();

export function setBodyParseError(req: IncomingMessage, err: GraygateError): void {
  errors.set(req, err);
}

export function bodyParseErrorOf(req: IncomingMessage): GraygateError | undefined {
  return errors.get(req);
}
