// ESLint flat config (issue 11 part 3). Type-aware typescript-eslint over one TypeScript program
// (tsconfig.test.json covers master, worker, shared, scripts and test), plus the module-graph checks:
// master/ and worker/ never import each other, shared/ imports neither (import-x/no-restricted-paths). No
// import cycles is scripts/check-cycles.mjs, also in `npm run lint`: it follows `import type` too.
// Formatting is Prettier's (.prettierrc.json, `npm run format:check`); max-len here is the backstop
// for what Prettier cannot wrap (comments).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';
import { importX } from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import globals from 'globals';

const project = './tsconfig.test.json';

export default defineConfig(
  { ignores: ['dist/', 'coverage/', 'reports/', '.tap/', 'node_modules/', 'deploy/', 'docs/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: globals.node,
      parserOptions: { project, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { 'import-x': importX },
    settings: {
      // Which files import-x reads to follow imports (no-cycle): TypeScript's, with `./x.js` resolved to x.ts.
      'import-x/extensions': ['.ts', '.js', '.mjs', '.cjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [createTypeScriptImportResolver({ project })],
    },
    rules: {
      // The module graph.
      // Import cycles: scripts/check-cycles.mjs (in `npm run lint`), which follows `import type` too, and costs 2 s
      // where import-x/no-cycle cost ~15 % of the whole ESLint run.
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            {
              target: './master',
              from: './worker',
              message: 'master/ and worker/ talk over IPC only (shared/ipc.ts).',
            },
            {
              target: './worker',
              from: './master',
              message: 'master/ and worker/ talk over IPC only (shared/ipc.ts).',
            },
            { target: './shared', from: ['./master', './worker'], message: 'shared/ is the leaf both sides use.' },
          ],
        },
      ],
      // Promises: every one is awaited, returned, or explicitly `void`ed; none handed to a callback that
      // ignores it.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // tap's t.test() returns a promise tap itself tracks: the parent test waits for its subtests and
          // reports a rejection as a failure, so a test file need not await each one.
          allowForKnownSafePromises: [{ from: 'package', name: 'PromiseWithSubtest', package: '@tapjs/core' }],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      // `_name` marks a parameter a signature needs but the body does not use; `{ drop: _, ...rest }` omits.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // An AbortSignal's reason and a caught `unknown` are passed on as they are (the abort reason is the
      // error the caller chose); everything else rejects with an Error.
      '@typescript-eslint/prefer-promise-reject-errors': [
        'error',
        { allowThrowingAny: true, allowThrowingUnknown: true },
      ],
      // Off: an async function without await is deliberate here (it turns a throw into a rejection, or
      // implements an interface that returns a promise); dropping `async` would change behaviour.
      '@typescript-eslint/require-await': 'off',
      // 120 is Prettier's printWidth (.prettierrc.json). Prettier wraps code but not strings, template
      // literals, regular expressions or URLs; those lines may stay long rather than be split mid-text.
      'max-len': [
        'error',
        {
          code: 120,
          tabWidth: 2,
          ignoreUrls: true,
          ignoreStrings: true,
          ignoreTemplateLiterals: true,
          ignoreRegExpLiterals: true,
        },
      ],
    },
  },
  {
    // node:http's values come from shared/node-http.ts: an ES module import of them builds the module's namespace,
    // which on Node 22 loads node's bundled undici in every process (test/shared/node-http.test.ts). Types are free.
    // scripts/cli/ too: `graygate start` runs the master in the CLI's process.
    files: ['master/**/*.ts', 'worker/**/*.ts', 'shared/**/*.ts', 'scripts/cli/**/*.ts'],
    ignores: ['shared/node-http.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        ...['node:http', 'http'].map((name) => ({
          name,
          allowTypeImports: true,
          message: "take node:http's values from shared/node-http.js (its namespace loads undici on Node 22)",
        })),
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ImportExpression[source.value=/^(node:)?http$/]',
          message: "take node:http's values from shared/node-http.js (its namespace loads undici on Node 22)",
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    // CommonJS has no other import (test/helpers/child-coverage.cjs says why it is CommonJS).
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
