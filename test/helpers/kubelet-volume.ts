import { mkdtempSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

// A directory laid out and updated the way kubelet updates a mounted ConfigMap (its AtomicWriter,
// kubernetes pkg/volume/util/atomic_writer.go), so watch tests need no cluster:
//
//   dir/..2026_12_01_11_29_03.123456789/graygate.json   the data of one revision
//   dir/..data -> ..2026_12_01_11_29_03.123456789         switched by one rename(2)
//   dir/graygate.json -> ..data/graygate.json             created once, never touched again
//
// An update writes a new timestamped directory, points `..data_tmp` at it, renames `..data_tmp`
// over `..data` (the atomic step), then removes the old directory. The user-visible path never
// changes inode, which is why watching the file itself goes stale.

export interface KubeletVolume {
  /** The mount directory (what the pod sees as e.g. /etc/graygate). */
  readonly dir: string;
  /** The user-visible path of one key, e.g. `volume.path('graygate.json')`. */
  path(key: string): string;
  /** Swaps in a new revision holding exactly `files` (key → content), as kubelet does. */
  update(files: Record<string, string>): void;
}

/** Lays out the first revision of `files` in `dir` (which must exist and be empty). */
export function createKubeletVolume(dir: string, files: Record<string, string>): KubeletVolume {
  const update = (next: Record<string, string>): void => {
    const dataLink = join(dir, '..data');
    const old = existsSync(dataLink) ? readlinkSync(dataLink) : undefined;
    const revision = mkdtempSync(join(dir, `..${timestamp()}.`));
    for (const [key, content] of Object.entries(next)) writeFileSync(join(revision, key), content);
    const tmpLink = join(dir, '..data_tmp');
    symlinkSync(revision.slice(dir.length + 1), tmpLink); // relative, as kubelet's
    renameSync(tmpLink, dataLink);
    for (const key of Object.keys(next)) {
      if (!existsSync(join(dir, key))) symlinkSync(join('..data', key), join(dir, key));
    }
    if (old !== undefined) rmSync(join(dir, old), { recursive: true, force: true });
  };
  update(files);
  return { dir, path: (key) => join(dir, key), update };
}

/** kubelet's `..2006_01_02_15_04_05.` prefix (Go time layout); mkdtemp adds the unique part. */
function timestamp(): string {
  const d = new Date();
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}_${two(d.getUTCMonth() + 1)}_${two(d.getUTCDate())}_${two(d.getUTCHours())}_${two(d.getUTCMinutes())}_${two(d.getUTCSeconds())}`;
}
