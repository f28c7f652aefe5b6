import t from 'tap';
import { parseDataUrl } from '../../../worker/upstream/message-parts.js';

t.test('data URLs: media type and payload, parameters skipped; anything else is not one', async (t) => {
  t.same(parseDataUrl('data:image/png;base64,iVBOR'), { mediaType: 'image/png', data: 'iVBOR' });
  t.same(parseDataUrl('DATA:Image/JPEG;name=a.jpg;charset=x;BASE64,AA'), { mediaType: 'image/jpeg', data: 'AA' });
  t.same(parseDataUrl('data:;base64,AA'), { mediaType: undefined, data: 'AA' });
  t.same(parseDataUrl('data:image/png;base64,'), { mediaType: 'image/png', data: '' });
  for (const url of [
    'https://x/y.png',
    'data:image/png,AA', // not base64
    'data:image/png;base64', // no payload
    'data:image png;base64,AA', // not type/subtype
    'data:image/png;base64x,AA',
  ])
    t.equal(parseDataUrl(url), undefined, url);
});

t.test('many parameters cost one pass, not a backtracking stack (a regular expression threw at 8 M)', async (t) => {
  t.same(parseDataUrl(`data:image/png${';'.repeat(8_000_000)};base64,AA`), { mediaType: 'image/png', data: 'AA' });
  t.equal(parseDataUrl(`data:image/png${';'.repeat(8_000_000)}AA`), undefined);
});
