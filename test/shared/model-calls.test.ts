import t from 'tap';
import { isModelCall, isModelListRead } from '../../shared/model-calls.js';

// Which requests a canary judges as model calls and which are reads of the model list (master/request-end.ts).

t.test('a model call is a POST to one of the four call paths, its query string aside', async (t) => {
  for (const path of ['/v1/chat/completions', '/v1/embeddings', '/v1/completions', '/v1/responses'])
    t.ok(isModelCall('POST', `${path}?version=v2`), path);
  t.notOk(isModelCall('GET', '/v1/chat/completions'), 'not a GET');
  t.notOk(isModelCall('POST', '/v1/nope'), "a path no worker serves: the master's 404, a typo");
  t.notOk(isModelCall('POST', '/v1/responses/resp_1/cancel'), 'a stored response');
  t.notOk(isModelCall('POST', '/v1/chat/completions/'), 'no trailing slash');
  t.notOk(isModelCall('POST', 'constructor'), 'nothing from the prototype');
  t.notOk(isModelCall('POST', undefined));
});

t.test('a read of the model list is a GET or HEAD of /v1/models or one model', async (t) => {
  t.ok(isModelListRead('GET', '/v1/models'));
  t.ok(isModelListRead('HEAD', '/v1/models?version=v2'));
  t.ok(isModelListRead('GET', '/v1/models/gpt-4o'));
  t.notOk(isModelListRead('POST', '/v1/models'), 'a POST is answered 405, judged as any other request');
  t.notOk(isModelListRead('GET', '/v1/modelsx'));
  t.notOk(isModelListRead('GET', undefined));
});
