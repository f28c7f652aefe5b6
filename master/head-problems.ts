import type { IncomingMessage } from 'node:http';
import { GraygateError } from '../shared/errors.js';
import { LAX_HTTP_PARSER, laxParserProblem } from './http-parser.js';
import { HOST_VALUE } from './request-facts.js';

// SPEC §4a: the heads both of the master's ports refuse (the main port's gateway.ts, the admin port's admin/server.ts),
// what Node's parser lets through and nginx does not.

/**
 * An Expect field of 100-continue alone (RFC 9110 §10.1.1: a member other than it may be refused with 417). Node's own
 * test (`continueExpression`, lib/_http_server.js) finds it anywhere: `x-100-continue` and `100-continue, tea` got
 * `100 Continue` (a probe).
 */
export function isContinueExpectation(value: string): boolean {
  const members = expectations(value);
  return members.length > 0 && members.every((member) => member === '100-continue');
}

/**
 * An Expect field naming an expectation the master does not meet (417). Not an empty one, nor the empty members of a
 * list (RFC 9110 §5.6.1: a recipient accepts them): `Expect:` alone, which Python's http.client sends for an empty
 * value, was a 417 to every request (node's own test refuses it too).
 */
function isUnmetExpectation(value: string): boolean {
  return expectations(value).some((member) => member !== '100-continue');
}

/** The members of an Expect field, lower case, its empty ones left out. */
function expectations(value: string): string[] {
  const members: string[] = [];
  for (const member of value.split(',')) {
    const name = member.trim().toLowerCase();
    if (name !== '') members.push(name);
  }
  return members;
}

/**
 * What Node's parser lets through and nginx refuses (SPEC §4a): an HTTP/1.1 request without a Host, with two, or
 * with a value no host has (`a b`, `evil.example/x@y`; 400, RFC 9112 §3.2), an expectation other than 100-continue
 * (417, RFC 9110 §10.1.1), a transfer-coding other than chunked (501: the master would forward the body still coded,
 * framed as plain bytes), any Transfer-Encoding on HTTP/1.0 (400: RFC 9112 §6.1 says its framing is faulty), and a
 * request line of any version but 1.0 and 1.1 (505), and a body with a content coding (415).
 */
export function headProblem(req: IncomingMessage): GraygateError | undefined {
  let hosts = 0;
  const raw = req.rawHeaders;
  if (LAX_HTTP_PARSER) {
    const problem = laxParserProblem(raw, req.url ?? '/');
    if (problem !== undefined) return new GraygateError('invalid_request', `malformed HTTP request: ${problem}`);
  }
  // Node's parser takes `HTTP/2.0` and `HTTP/0.9` in a request line with headers, and answered them as HTTP/1.1
  // (health paths included); nginx answers 505.
  if (req.httpVersionMajor !== 1)
    return new GraygateError('invalid_request', `HTTP/${req.httpVersion} is not served here: send HTTP/1.1`, {
      status: 505,
    });
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') hosts++;
  const isHttp11 = req.httpVersionMinor >= 1;
  if (hosts > 1 || (hosts === 0 && isHttp11))
    return new GraygateError('invalid_request', `an HTTP/1.1 request needs one Host header (it has ${hosts})`);
  const host = req.headers.host;
  if (host !== undefined && !HOST_VALUE.test(host))
    return new GraygateError('invalid_request', 'the Host header is not a host name or address with a port');
  // An expectation other than 100-continue (Node's `checkExpectation` requests, and what its looser test let by), on
  // HTTP/1.1 only.
  const expect = req.headers['expect'];
  if (expect !== undefined && isHttp11 && isUnmetExpectation(expect))
    return new GraygateError('invalid_request', 'only `Expect: 100-continue` is supported', { status: 417 });
  const coding = req.headers['transfer-encoding'];
  if (coding !== undefined && !isHttp11)
    return new GraygateError('invalid_request', 'Transfer-Encoding in an HTTP/1.0 request (its framing is faulty)');
  if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked')
    return new GraygateError('invalid_request', `Transfer-Encoding "${coding}" is not supported, only chunked`, {
      status: 501,
    });
  // A coded body (gzip, br): neither the master (the sticky `user`) nor a worker decodes one, so a gzipped prompt was a
  // 400 naming its binary bytes, and a body labelled `br` but sent plain was read as plain (RFC 9110 §15.5.16: 415).
  const contentCoding = req.headers['content-encoding'];
  if (contentCoding !== undefined && hasBody(req) && !IDENTITY.test(contentCoding))
    return new GraygateError(
      'invalid_request',
      `Content-Encoding "${contentCoding}" is not supported: send the body as is`,
      {
        status: 415,
        shouldRetry: false,
      },
    );
  return undefined;
}

/**
 * No coding: `identity` or nothing (RFC 9110 §8.4.1), with spaces and tabs around it (OWS). Not `\s`: it matches the
 * 0xA0 byte node reads in a header as latin1, and two `\s*` either side of an optional word backtracked against each
 * other, so 16 KiB of them held the master's loop ~1 s a request on either port, before any token (a probe).
 */
const IDENTITY = /^[ \t]*(?:identity[ \t]*)?$/i;

/** A body is framed: chunked, or a Content-Length other than 0. */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * An Upgrade neither port takes (neither proxies a WebSocket): node's parser stops at such a request and drops what was
 * read after it, pipelined requests included, so its connection closes after the answer instead of leaving them
 * unanswered until the keep-alive timeout. The client sends them again on a new connection.
 */
export function isUpgrade(req: IncomingMessage): boolean {
  return req.headers.upgrade !== undefined && /\bupgrade\b/i.test(req.headers.connection ?? '');
}
