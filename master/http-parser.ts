// The master's safety on the client hop (SPEC §4a) rests on node's HTTP parser, llhttp. Node 20 before 20.19.2
// ships llhttp 8, which lets through what llhttp 9 refuses: a header name with a space in it (`Bad Header: x`, or
// `Foo : x`), a control character in a target (a tab), a head ended by `\r\n\r` and any byte (CVE-2025-23167), chunk
// data not followed by its CRLF. graygate supports node ≥ 20.18, so on such a node the master refuses the first two
// itself (node's ClientRequest throws on them when the request is forwarded: a 500 for the client's fault, with its
// connection kept open), and says at start that the last two are beyond it: only a newer node refuses them.

/** Whether a node's llhttp (`process.versions.llhttp`) is 8: node 20 before 20.19.2. */
const isLax = (llhttp: string | undefined): boolean => Number(llhttp?.split('.')[0] ?? 9) < 9;

/** True where node's parser is llhttp 8: every request head then gets {@link laxParserProblem}. */
export const LAX_HTTP_PARSER = isLax(process.versions.llhttp);

/** RFC 9110 §5.1: a field name is a token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5, as node's validateHeaderValue checks it: no control character but HTAB. */
const FIELD_VALUE_BAD = /[^\t\x20-\x7e\x80-\xff]/;
/** node's ClientRequest refuses a path outside U+0021–U+00FF (ERR_UNESCAPED_CHARACTERS). */
const TARGET_BAD = /[^\u0021-\u00ff]/;

/** What llhttp 9 refuses in a head that llhttp 8 gave the master; undefined when the head is sound. */
export function laxParserProblem(rawHeaders: readonly string[], target: string): string | undefined {
  if (TARGET_BAD.test(target)) return 'the request target has a space or control character';
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (!TOKEN.test(rawHeaders[i]!)) return `header name ${JSON.stringify(rawHeaders[i])} is not a token`;
    if (FIELD_VALUE_BAD.test(rawHeaders[i + 1]!))
      return `header ${JSON.stringify(rawHeaders[i])} has a control character in its value`;
  }
  return undefined;
}

/** The start-up warning for a node whose parser has known request-smuggling flaws; undefined for a sound one. */
export function laxParserWarning(versions: { node: string; llhttp?: string }): string | undefined {
  if (!isLax(versions.llhttp)) return undefined;
  return (
    `node ${versions.node}'s HTTP parser (llhttp ${versions.llhttp}) accepts request heads ended by a lone CR ` +
    '(CVE-2025-23167) and chunk data without its CRLF, which a proxy in front may read differently (request ' +
    'smuggling); graygate refuses the other heads it lets through, not these: run node 20.19.2 or later, or 22'
  );
}
