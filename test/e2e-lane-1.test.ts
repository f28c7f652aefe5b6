import t from 'tap';
import { runLane } from './helpers/e2e-lane.js';

// One of the three processes `npm test` runs the e2e files in (test/helpers/e2e-lane.ts says how and why).
await runLane(t, import.meta.url);
