import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, tempDir } from '../helpers.js'
import { readRecords } from './records.js'

describe('harness records', () => {
  it('a reader racing a writer in another process always parses a whole record', async () => {
    const dir = tempDir()
    const writer = spawn(process.execPath, [join(ROOT, 'test/fixtures/record-writer.mjs'), dir, '3000'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    })
    const exited = new Promise<number | null>((r) => writer.on('close', (code) => r(code)))
    let reads = 0
    let seen = 0
    while (writer.exitCode === null) {
      // what killOnceWorkersRun (and a harness restoring its state) does while the orchestrator runs
      const records = readRecords<{ i: number; padding: string }>(dir)
      for (const r of records) expect(r.padding).toHaveLength(256 * 1024)
      seen += records.length
      reads++
      await new Promise((r) => setImmediate(r))
    }
    expect(await exited).toBe(0)
    expect(reads).toBeGreaterThan(10)
    expect(seen).toBeGreaterThan(0)
  })
})
