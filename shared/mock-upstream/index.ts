// The mock upstream's public surface (STYLE §4): the CLI, the worker's
// `"url": "mock:"` and tests import from here only.
export {
  startMockUpstream,
  MockStream,
  type MockUpstream,
  type MockUpstreamOptions,
  type MockUpstreamStats,
} from './server.js';
export { mockEmbedding } from './embeddings.js';
export { sampleFromSchema } from './schema-sample.js';
export { MOCK_MODEL_CREATED } from './models.js';
export { mockText, mockToken, countPromptTokens } from './text.js';
export { type MockControls, type MockFault } from './controls.js';
export { BASE_PATHS, CHAT_PATHS, FRAMES, type MockAnswer, type MockFormat } from './formats.js';
