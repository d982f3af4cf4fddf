import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, run } from '../helpers.js'

const WORKER = join(ROOT, 'dist', 'runners', 'worker.js')

describe('the worker entry point', () => {
  it('names its tasks when the task is unknown, and exits 2', async () => {
    const r = await run([WORKER, 'no-such-task', '{}'])
    expect(r.code).toBe(2)
    expect(JSON.parse(r.stdout.trim())).toEqual({
      type: 'error',
      error: 'usage: worker <task> <input-json>; tasks: index-shard (not no-such-task)',
    })
  })

  it('reports a task that throws as an error message and exits 1', async () => {
    const r = await run([
      WORKER,
      'index-shard',
      JSON.stringify({
        source: '/nonexistent/x.db',
        table: 'media_clean',
        lo: 0,
        hi: 10,
        output: '/nonexistent/y.db',
        shard: 0,
      }),
    ])
    expect(r.code).toBe(1)
    const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { type: string; error: string }
    expect(last.type).toBe('error')
    expect(last.error).toMatch(/directory does not exist|unable to open/)
  })
})
