import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // real child processes and SQLite files: forks isolate native handles per test file
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
})
