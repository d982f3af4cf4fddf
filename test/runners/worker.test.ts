import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3Store } from '../../aws/s3.js'
import { type Message, type WorkerStatus, workerMain } from '../../runners/worker.js'
import { CLI, ROOT, run, tempDir } from '../helpers.js'
import { type LocalS3, startLocalS3 } from '../s3-server.js'

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
    expect(last.error).toMatch(/source database \/nonexistent\/x.db does not exist/)
  })
})

/** A small cleaned database: `rows` media rows with ids 1..rows. */
function cleanDb(file: string, rows: number): void {
  const db = new Database(file)
  db.exec(
    'CREATE TABLE media_clean (id INTEGER PRIMARY KEY, title TEXT, creator TEXT, tags TEXT, url TEXT, license TEXT, provider TEXT, identifier TEXT)',
  )
  const insert = db.prepare('INSERT INTO media_clean VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
  db.transaction(() => {
    for (let id = 1; id <= rows; id++) {
      insert.run(
        id,
        `title ${id}`,
        `creator ${id % 7}`,
        JSON.stringify([{ name: `tag${id % 5}` }]),
        `https://x/${id}`,
        'by',
        'p',
        `m${id}`,
      )
    }
  })()
  db.close()
}

describe('the worker over S3 (a real local S3 server)', () => {
  let s3: LocalS3
  const store = new S3Store({ where: 'the test' })
  beforeAll(async () => {
    s3 = await startLocalS3(['refresh-test'])
  })
  afterAll(async () => {
    await store.close()
    await s3.close()
  })

  it('reads its source from S3, uploads its shard, and keeps its status in S3: progress, then the result', async () => {
    const dir = tempDir()
    cleanDb(join(dir, 'clean.db'), 500)
    await store.upload(join(dir, 'clean.db'), 'refresh-test', 'w1/input/clean.db')
    const input = {
      source: 's3://refresh-test/w1/input/clean.db',
      table: 'media_clean',
      lo: 1,
      hi: 401,
      output: 's3://refresh-test/w1/shards/shard-000.db',
      shard: 0,
    }
    const statuses: WorkerStatus[] = []
    const messages: Message[] = []
    const code = await workerMain(['index-shard', JSON.stringify(input)], {
      statusFile: 's3://refresh-test/w1/status/shard-0.attempt-1.json',
      statusIntervalMs: 0,
      onStatus: (s) => statuses.push(s),
      onMessage: (m) => {
        messages.push(m)
      },
    })
    expect(code).toBe(0)
    expect(statuses[0]).toMatchObject({ state: 'running', done: 0, total: null })
    // progress (the build's first and last report) reached S3 before the result
    const progress = statuses.findIndex((s) => s.state === 'running' && s.total === 400)
    expect(progress).toBeGreaterThan(0)
    expect(progress).toBeLessThan(statuses.length - 1)
    expect(statuses.at(-1)).toMatchObject({ state: 'succeeded', done: 400, total: 400 })
    expect(statuses.filter((s) => s.state !== 'running')).toHaveLength(1)
    expect(messages.at(-1)?.type).toBe('result')
    const stored = await store.getJson<WorkerStatus>('refresh-test', 'w1/status/shard-0.attempt-1.json')
    expect(stored).toMatchObject({ state: 'succeeded', output: { documents: 400, shard: 0 } })
    const output = (stored as unknown as { output: { sha256: string; bytes: number } }).output
    expect(output.sha256).toMatch(/^[0-9a-f]{64}$/)
    const back = join(dir, 'shard.db')
    const got = await store.download('refresh-test', 'w1/shards/shard-000.db', back, {
      expect: { sha256: output.sha256 },
    })
    expect(got.bytes).toBe(output.bytes)
    const db = new Database(back, { readonly: true })
    expect((db.prepare('SELECT count(*) AS n FROM docs').get() as { n: number }).n).toBe(400)
    db.close()
  })

  it('`refresh worker --status-file s3://...` exits 1 with a failed status when its source is missing', async () => {
    const input = {
      source: 's3://refresh-test/nothing/clean.db',
      table: 'media_clean',
      lo: 1,
      hi: 10,
      output: 's3://refresh-test/w2/shards/shard-000.db',
      shard: 0,
    }
    const r = await run(
      [
        CLI,
        'worker',
        'index-shard',
        JSON.stringify(input),
        '--status-file',
        's3://refresh-test/w2/status.json',
      ],
      {
        env: s3.env,
      },
    )
    expect(r.code).toBe(1)
    const status = await store.getJson<WorkerStatus>('refresh-test', 'w2/status.json')
    expect(status).toMatchObject({ state: 'failed' })
    expect((status as { error: string }).error).toMatch(
      /s3:\/\/refresh-test\/nothing\/clean\.db does not exist/,
    )
  })

  it('fails (non-zero) when the final status cannot be written, even though the task succeeded', async () => {
    const dir = tempDir()
    cleanDb(join(dir, 'clean.db'), 50)
    const real = new S3Store()
    const flaky = {
      putJson: (bucket: string, key: string, value: WorkerStatus) => {
        if (value.state !== 'running') return Promise.reject(new Error('PutObject failed: SlowDown'))
        return real.putJson(bucket, key, value)
      },
      close: () => real.close(),
    } as unknown as S3Store
    const messages: Message[] = []
    const code = await workerMain(
      [
        'index-shard',
        JSON.stringify({
          source: join(dir, 'clean.db'),
          table: 'media_clean',
          lo: 1,
          hi: 51,
          output: join(dir, 'shard.db'),
          shard: 0,
        }),
      ],
      {
        statusFile: 's3://refresh-test/w3/status.json',
        s3: flaky,
        onMessage: (m) => {
          messages.push(m)
        },
      },
    )
    real.close()
    expect(code).toBe(1)
    expect(messages.at(-1)).toMatchObject({
      type: 'error',
      error: expect.stringMatching(/could not write the worker status s3:\/\/refresh-test\/w3\/status\.json/),
    })
    expect(messages.some((m) => m.type === 'result')).toBe(false)
  })
})
