import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../helpers/gateway.js';
import { packageVersion } from '../../../scripts/cli/version.js';

t.test('packageVersion reads the package.json above it, from the source and from dist/', async (t) => {
  const want = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  t.equal(packageVersion(), want, 'from scripts/cli/');
  t.equal(packageVersion(join(ROOT, 'dist/scripts/cli/version.js')), want, 'from dist/scripts/cli/');
  t.throws(() => packageVersion('/version.js'), /no package\.json of graygate above/);
});
