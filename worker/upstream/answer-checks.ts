import type { IncomingHttpHeaders } from 'node:http';
import { cutText, GraygateError } from '../../shared/errors.js';
import { withoutBom, withoutSecrets } from './format-adapter.js';

// What an upstream's answer head says that graygate cannot read (a coding it did not ask for), and the page a proxy
// or a captive portal sends with 200 where an event stream was asked for: each a clear error naming what came,
// never a stream that "ended before its final event" or compressed bytes shown as a message.

/**
 * What in an answer's codings graygate cannot read, as words for its error (undefined: nothing). It asks for
 * `Accept-Encoding: identity` and decodes nothing: a `Content-Encoding` other than identity, or a `Transfer-Encoding`
 * other than chunked (`gzip, chunked`: undici takes off the chunking only). An empty coding, as an empty header
 * (RFC 9110 §8.4: a list; no element, no coding), `none` (not registered, but servers send it for no coding) and
 * `identity` (RFC 2616's, which old servers still send as a Transfer-Encoding) are none, as for curl, fetch and nginx.
 */
export function codingProblem(headers: IncomingHttpHeaders): string | undefined {
  const content = headers['content-encoding'];
  if (content !== undefined && !onlyCodings(content, NO_CONTENT_CODING))
    return `with Content-Encoding: ${printable(content)}, though asked for none (identity)`;
  const transfer = headers['transfer-encoding'];
  if (transfer !== undefined && !onlyCodings(transfer, CHUNKED))
    return `with Transfer-Encoding: ${printable(transfer)}, which graygate does not decode (only chunked)`;
  return undefined;
}

const NO_CONTENT_CODING: ReadonlySet<string> = new Set(['', 'identity', 'none']);
const CHUNKED: ReadonlySet<string> = new Set(['', 'identity', 'chunked']);

function onlyCodings(value: string | string[], allowed: ReadonlySet<string>): boolean {
  return String(value)
    .split(',')
    .every((coding) => allowed.has(coding.trim().toLowerCase()));
}

/** A header's value for an error message: the worker's key hidden, bounded, control characters out. */
export function printable(value: string | string[]): string {
  // eslint-disable-next-line no-control-regex
  const controls = /[\x00-\x1f\x7f]/g;
  return cutText(withoutSecrets(String(value)), 80).replace(controls, '?');
}

export function isHtml(contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && /^text\/html\b/i.test(contentType.trimStart());
}

/**
 * A body said to be `text/html` on a streaming call, read by its first bytes: markup (`<` first, after white space)
 * is a proxy's or a portal's page; anything else is read as the event stream it may well be (some servers label their
 * streams `text/html`, PHP's default). `undefined` while only white space has come.
 */
export function isMarkupStart(chunk: Buffer): boolean | undefined {
  // A byte-order mark before the page (one cut across two chunks reads as no page, and ends "before its final event").
  const start = withoutBom(chunk);
  for (let i = 0; i < start.length; i++) {
    const byte = start[i]!;
    if (byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d) continue;
    return byte === 0x3c;
  }
  return undefined;
}

/** The error for a page where an event stream was asked for, named by its first bytes. */
export function notEventStream(page: Buffer): GraygateError {
  const text = withoutSecrets(page.toString('utf8', 0, 1024)).trimStart();
  return new GraygateError(
    'upstream_protocol_error',
    `the upstream answered a streaming request with text/html, not an event stream: ${JSON.stringify(cutText(text, 40))}`,
  );
}
