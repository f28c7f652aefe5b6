import t from 'tap';
import { DEFAULT_CONTROLS, readControls } from '../../shared/mock-upstream/controls.js';

// The mock upstream's controls (README, Mock upstream): a value it does not know is ignored, a name of every object's
// prototype included (a review: `newline=constructor` made the newline `function Object()`, and SSE framing broke).

t.test('newline: lf, crlf or cr; anything else, `constructor` included, leaves the default', async (t) => {
  const newline = (value: string): string => readControls({ 'x-mock-newline': value }, '', DEFAULT_CONTROLS).newline;
  t.equal(newline('crlf'), '\r\n');
  t.equal(newline('cr'), '\r');
  for (const value of ['constructor', 'toString', '__proto__', 'nope'])
    t.equal(newline(value), DEFAULT_CONTROLS.newline, value);
  t.equal(readControls({}, '[mock newline=constructor]', DEFAULT_CONTROLS).newline, DEFAULT_CONTROLS.newline);
});
