import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { NonRetriableError, StoreError } from '../../core/errors.js'
import { materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import { MIGRATIONS, SCHEMA_VERSION } from '../../core/store/sqlite/migrations.js'
import { noop, tempDir } from '../helpers.js'

describe('store', () => {
  it('creates a versioned WAL store with every table', async () => {
    const file = join(tempDir(), 'nested', 'refresh.db')
    await using store = await openStore(file)
    expect(await store.schemaVersion()).toBe(SCHEMA_VERSION)
    const db = new Database(file, { readonly: true })
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    const tables = (
      db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as Array<{
        name: string
      }>
    ).map((r) => r.name)
    expect(tables).toEqual(
      expect.arrayContaining([
        'runs',
        'steps',
        'attempts',
        'events',
        'materializations',
        'instigators',
        'ticks',
        'run_keys',
        'leases',
        'pool_slots',
        'parked_requests',
        'settings',
      ]),
    )
    db.close()
  })

  it('reads events written with their whole event as payload (before the columns were left out of it)', async () => {
    const file = join(tempDir(), 'refresh.db')
    const store = await openStore(file)
    await store.createRun({ id: 'r', selection: '*', plan: ['a'], config: {}, status: 'queued', now: 1 })
    await store.close()
    const db = new Database(file)
    const insert = db.prepare(
      'INSERT INTO events (run_id, ts, type, step_key, payload) VALUES (?, ?, ?, ?, ?)',
    )
    const old = [
      { type: 'log', runId: 'r', ts: 2, step: null, level: 'info', message: 'hello' },
      { type: 'step:start', runId: 'r', ts: 3, step: 'a', attempt: 1, maxAttempts: 2 },
    ] as const
    for (const e of old) insert.run(e.runId, e.ts, e.type, e.step, JSON.stringify(e))
    db.close()
    await using reopened = await openStore(file)
    expect((await reopened.getEvents('r')).map(({ id: _, ...e }) => e)).toEqual(old)
    expect((await reopened.getEvents('r', { step: 'a' })).map((e) => e.type)).toEqual(['step:start'])
  })

  it('keeps a run across processes: reopen the file and everything is there', async () => {
    const file = join(tempDir(), 'refresh.db')
    const result = await materialize(
      [
        noop('a', [], {
          materialize: (ctx) => {
            ctx.log('copying')
            return { rows: 3 }
          },
        }),
        noop('b', ['a'], {
          retry: { maxAttempts: 2, delayMs: 0 },
          materialize: (ctx) => {
            if (ctx.attempt === 1) throw new Error('flaky')
            return { ok: true }
          },
        }),
        noop('c', ['b'], {
          materialize: () => {
            throw new NonRetriableError('broken')
          },
        }),
      ],
      { store: file, tags: { team: 'search' } },
    )
    await using store = await openStore(file)
    const run = (await store.getRun(result.runId))!
    expect(run).toMatchObject({
      status: 'failure',
      selection: '*',
      plan: ['a', 'b', 'c'],
      tags: { team: 'search' },
    })
    expect(run.endedAt).not.toBeNull()
    expect((await store.getSteps(result.runId)).map((s) => [s.key, s.status, s.attempts])).toEqual([
      ['a', 'succeeded', 1],
      ['b', 'succeeded', 2],
      ['c', 'failed', 1],
    ])
    expect((await store.getSteps(result.runId))[2]?.error?.message).toBe('broken')
    expect(
      (await store.getAttempts(result.runId, 'b')).map((a) => [
        a.attempt,
        a.status,
        a.error?.message ?? null,
      ]),
    ).toEqual([
      [1, 'failed', 'flaky'],
      [2, 'succeeded', null],
    ])
    expect((await store.latestMaterialization('a'))?.metadata).toEqual({ rows: 3 })
    expect(await store.latestMaterialization('c')).toBeUndefined()
    expect(
      (await store.getEvents(result.runId, { types: ['log'] })).map((e) => e.type === 'log' && e.message),
    ).toEqual(['copying'])
    expect(await store.getEvents(result.runId, { step: 'b', types: ['step:retry'] })).toHaveLength(1)
    expect((await store.listRuns({ status: 'failure' })).map((r) => r.id)).toEqual([result.runId])
    expect(await store.listRuns({ status: 'success' })).toEqual([])
  })

  it('lists runs newest first, filtered by status, paginated', async () => {
    await using store = await openStore(':memory:')
    const ids: string[] = []
    for (let i = 0; i < 5; i++) {
      const fail = i % 2 === 1
      const r = await materialize(
        [
          noop('a', [], {
            materialize: () => {
              if (fail) throw new NonRetriableError('x')
            },
          }),
        ],
        { store },
      )
      ids.push(r.runId)
      await new Promise((r) => setTimeout(r, 2))
    }
    expect((await store.listRuns()).map((r) => r.id)).toEqual([...ids].reverse())
    expect((await store.listRuns({ status: 'failure' })).map((r) => r.id)).toEqual([ids[3], ids[1]])
    expect((await store.listRuns({ limit: 2 })).map((r) => r.id)).toEqual([ids[4], ids[3]])
    expect((await store.listRuns({ before: ids[2], limit: 5 })).map((r) => r.id)).toEqual([ids[1], ids[0]])
    expect(await store.countRuns()).toMatchObject({ success: 3, failure: 2 })
    expect((await store.findRun(ids[0]!.slice(0, 16)))?.id).toBe(ids[0])
  })

  it('refuses a store written by a newer schema, untouched', async () => {
    const file = join(tempDir(), 'refresh.db')
    await (await openStore(file)).close()
    const db = new Database(file)
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
    db.pragma('journal_mode = DELETE')
    db.close()
    const before = readFileSync(file)
    await expect(openStore(file)).rejects.toThrow(StoreError)
    await expect(openStore(file)).rejects.toThrow(/written by a newer version of refresh .*left untouched/)
    expect(readFileSync(file).equals(before)).toBe(true)
  })

  it('refuses an SQLite file of another application, untouched', async () => {
    const file = join(tempDir(), 'other.db')
    const db = new Database(file)
    db.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY)')
    db.close()
    const before = readFileSync(file)
    await expect(openStore(file)).rejects.toThrow(
      /is an SQLite database but not a refresh store; it was left untouched/,
    )
    expect(readFileSync(file).equals(before)).toBe(true)
  })

  it('refuses a file that is not SQLite, untouched', async () => {
    const file = join(tempDir(), 'notes.txt')
    writeFileSync(file, 'these are my notes, not a database\n'.repeat(200))
    const before = readFileSync(file)
    await expect(openStore(file)).rejects.toThrow(/is not a refresh store/)
    expect(readFileSync(file).equals(before)).toBe(true)
  })

  it('migrates an older store forward', async () => {
    // version 0 with the refresh application id = a store created but never migrated
    const file = join(tempDir(), 'refresh.db')
    const db = new Database(file)
    db.pragma('application_id = 0x52465348')
    db.close()
    await using store = await openStore(file)
    expect(await store.schemaVersion()).toBe(SCHEMA_VERSION)
  })

  it('migrates a version-1 store with runs in it to the latest schema, keeping them', async () => {
    const file = join(tempDir(), 'refresh.db')
    const db = new Database(file)
    db.exec(MIGRATIONS[0]!)
    db.pragma('application_id = 0x52465348')
    db.pragma('user_version = 1')
    db.prepare(
      `INSERT INTO runs (id, status, selection, plan, created_at, ended_at) VALUES ('r1', 'success', '*', '["a"]', 1, 2)`,
    ).run()
    db.close()
    await using store = await openStore(file)
    expect(await store.schemaVersion()).toBe(SCHEMA_VERSION)
    expect(await store.getRun('r1')).toMatchObject({ status: 'success', plan: ['a'], guard: null })
    expect(await store.runHolds('r1')).toEqual([])
  })

  it('refuses to open a missing store read-only, and a directory', async () => {
    const dir = tempDir()
    await expect(openStore(join(dir, 'missing.db'), { readonly: true })).rejects.toThrow(/no store at/)
    await expect(openStore(dir)).rejects.toThrow(/is not a file/)
  })

  it('run keys are unique per origin, checked and claimed atomically with the run', async () => {
    await using store = await openStore(':memory:')
    const base = {
      selection: '*',
      plan: ['a'],
      config: {},
      status: 'queued' as const,
      now: 1,
      origin: 'sensor:s',
    }
    expect((await store.createRun({ ...base, id: 'r1', runKey: 'k' })).created).toBe(true)
    expect(await store.createRun({ ...base, id: 'r2', runKey: 'k' })).toEqual({
      created: false,
      existingRunId: 'r1',
    })
    expect((await store.createRun({ ...base, id: 'r3', runKey: 'k', origin: 'sensor:other' })).created).toBe(
      true,
    )
    expect(await store.getRun('r2')).toBeUndefined()
  })
})
