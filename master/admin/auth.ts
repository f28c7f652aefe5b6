import { timingSafeEqual, createHash } from 'node:crypto';

// SPEC §6: with GRAYGATE_ADMIN_TOKEN set, every admin call needs
// `Authorization: Bearer <token>`. Compared in constant time; hashing first
// makes both sides the same length so the length itself leaks nothing.
export function isAuthorized(header: string | undefined, token: string | undefined): boolean {
  if (token === undefined || token === '') return true;
  if (header === undefined || !header.startsWith('Bearer ')) return false;
  const sent = createHash('sha256').update(header.slice('Bearer '.length)).digest();
  const want = createHash('sha256').update(token).digest();
  return timingSafeEqual(sent, want);
}
