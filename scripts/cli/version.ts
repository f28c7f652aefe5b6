import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// `graygate --version` (issue 12 part 6): the version of the package this
// file was installed with, read at run time from its package.json, which is
// found by walking up from here: the compiled file (dist/scripts/cli/) and
// its source (scripts/cli/) sit at different depths.

const PACKAGE_NAME = 'graygate';

export function packageVersion(from: string = fileURLToPath(import.meta.url)): string {
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    let text: string | undefined;
    try {
      text = readFileSync(join(dir, 'package.json'), 'utf8');
    } catch {
      // no package.json at this level
    }
    const pkg = text === undefined ? undefined : (JSON.parse(text) as { name?: unknown; version?: unknown });
    if (pkg?.name === PACKAGE_NAME && typeof pkg.version === 'string') return pkg.version;
    if (dirname(dir) === dir) throw new Error(`no package.json of ${PACKAGE_NAME} above ${from}`);
  }
}
