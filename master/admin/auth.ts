import { timingSafeEqual, createHash } from 'node:crypto';

// SPEC §6: with GRAYGATE_ADMIN_TOKEN set, every admin call needs
// `Authorization: Bearer <token>`. Compared in constant time; hashing first
// makes both sides the same length so the length itself leaks nothing.
// The scheme is case-insensitive (RFC 9110 §11.1): `bearer`, `BEARER` work too.
const BEARER = /^bearer +/i;

export function isAuthorized(header: string | undefined, token: string | undefined): boolean {
  if (token === undefined || token === '') return true;
  const scheme = header === undefined ? null : BEARER.exec(header);
  if (header === undefined || scheme === null) return false;
  const sent = createHash('sha256').update(header.slice(scheme[0].length)).digest();
  const want = createHash('sha256').update(token).digest();
  return timingSafeEqual(sent, want);
}
