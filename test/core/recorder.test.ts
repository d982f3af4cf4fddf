import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { asset } from '../../core/definitions.js'
import { materialize } from '../../core/materialize.js'
import { tempDir } from '../helpers.js'

/** Blocks the event loop, as a synchronous step (SQLite work on the main thread) does. */
function busy(ms: number): void {
  const end = Date.now() + ms
  while (Date.now() < end) {
    // spin
  }
}

describe('the recorder', () => {
  it('nothing is shown as done before it is durable: a listener sees a step succeed only once the store has it', async () => {
    const file = join(tempDir(), 'refresh.db')
    const assets = [
      asset({ key: 'copy', materialize: () => ({ rows: 1 }) }),
      // the next step starts in the same turn and blocks the loop: a write left for "later" waits
      asset({ key: 'clean', deps: ['copy'], materialize: () => busy(300) }),
      asset({ key: 'reindex', deps: ['clean'], materialize: () => busy(100) }),
    ]
    const reader = () => new Database(file, { readonly: true, fileMustExist: true })
    const seen: Array<{ step: string; stored: string | undefined; materialized: number }> = []
    const result = await materialize(assets, {
      store: file,
      onEvent(event) {
        if (event.type !== 'step:success') return
        const db = reader()
        try {
          const row = db
            .prepare('SELECT status FROM steps WHERE run_id = ? AND key = ?')
            .get(event.runId, event.step) as { status: string } | undefined
          const m = db
            .prepare('SELECT count(*) AS n FROM materializations WHERE run_id = ? AND asset_key = ?')
            .get(event.runId, event.step) as { n: number }
          seen.push({ step: event.step, stored: row?.status, materialized: m.n })
        } finally {
          db.close()
        }
      },
    })
    expect(result.status).toBe('success')
    expect(seen).toEqual([
      { step: 'copy', stored: 'succeeded', materialized: 1 },
      { step: 'clean', stored: 'succeeded', materialized: 1 },
      { step: 'reindex', stored: 'succeeded', materialized: 1 },
    ])
  })

  it('events reach listeners in the order they were emitted, each once', async () => {
    const types: string[] = []
    const result = await materialize(
      [
        asset({ key: 'a', materialize: () => ({}) }),
        asset({ key: 'b', deps: ['a'], materialize: () => ({}) }),
      ],
      { onEvent: (e) => types.push(`${e.type}${'step' in e && e.step ? `:${e.step}` : ''}`) },
    )
    expect(result.status).toBe('success')
    expect(types[0]).toBe('run:start')
    expect(types.at(-1)).toBe('run:end')
    expect(types.indexOf('step:success:a')).toBeLessThan(types.indexOf('step:start:b'))
    expect(new Set(types).size).toBe(types.length)
  })
})
