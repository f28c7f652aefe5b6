#!/usr/bin/env node
// The `graygate` command (package.json bin). `npm ci` builds dist/ (prepare).
import '../dist/scripts/cli/main.js';
