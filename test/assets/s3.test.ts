import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { S3Client } from '@aws-sdk/client-s3'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ReplicaFleet, RolloutTarget } from '../../assets/backends.js'
import { partsOf } from '../../assets/backends.js'
import { catalog, exportCatalog, generateCatalog } from '../../assets/catalog.js'
import { clean } from '../../assets/clean.js'
import { copy, copyConfig } from '../../assets/copy.js'
import { layout } from '../../assets/layout.js'
import { promote, rollbackPromotion } from '../../assets/promote.js'
import { reindex } from '../../assets/reindex.js'
import { replicas } from '../../assets/replicas.js'
import { s3AliasStore } from '../../assets/s3-alias.js'
import { snapshot } from '../../assets/snapshot.js'
import type { Alias, Manifest } from '../../assets/state.js'
import { S3Store } from '../../aws/s3.js'
import { type AssetDefinition, asset } from '../../core/definitions.js'
import type { RunEvent } from '../../core/events.js'
import { materialize } from '../../core/materialize.js'
import { localProcessRunner } from '../../runners/local.js'
import { tempDir } from '../helpers.js'
import { type LocalS3, startLocalS3 } from '../s3-server.js'

const BUCKET = 'refresh-test'
let s3: LocalS3
let store: S3Store
/** A small catalog database, generated once and exported by the tests under their own prefixes. */
let catalogFile: string

beforeAll(async () => {
  s3 = await startLocalS3([BUCKET])
  store = new S3Store({ where: 'the test' })
  // not a tempDir(): those go after each test, and this one serves them all
  catalogFile = join(mkdtempSync(join(tmpdir(), 'refresh-s3-catalog-')), 'catalog.db')
  await generateCatalog(catalogFile, 1200, 7, () => undefined)
})
afterAll(async () => {
  await store.close()
  await s3.close()
  rmSync(join(catalogFile, '..'), { recursive: true, force: true })
})

function rowsOf(file: string): unknown[] {
  const db = new Database(file, { readonly: true })
  try {
    return db.prepare('SELECT * FROM media ORDER BY id').all()
  } finally {
    db.close()
  }
}

async function run(assets: AssetDefinition[], config: Record<string, unknown> = {}) {
  const dir = tempDir()
  const events: RunEvent[] = []
  const result = await materialize(assets, {
    store: join(dir, 'refresh.db'),
    config,
    onEvent: (e) => events.push(e),
  })
  return { result, events, logs: events.flatMap((e) => (e.type === 'log' ? [e.message] : [])) }
}

const failureOf = (events: RunEvent[], step = 'copy') =>
  events.find(
    (e): e is Extract<RunEvent, { type: 'step:failure' }> => e.type === 'step:failure' && e.step === step,
  )

describe('copy from an S3 export', () => {
  it('reads gzip and plain exports of several objects: the rows equal the catalog rows', async () => {
    const gz = await exportCatalog(catalogFile, `s3://${BUCKET}/gz/`, { objects: 3, gzip: true, store })
    expect(gz).toMatchObject({ objects: 3, rows: 1200 })
    await exportCatalog(catalogFile, `s3://${BUCKET}/plain/`, { objects: 2, gzip: false, store })
    const expected = rowsOf(catalogFile)
    for (const [prefix, objects] of [
      ['gz/', 3],
      ['plain/', 2],
    ] as const) {
      const dataDir = join(tempDir(), 'data')
      const { result, logs } = await run([copy({ dataDir, source: { bucket: BUCKET, prefix } })], {
        copy: { downloadConcurrency: 2 },
      })
      expect(result.status).toBe('success')
      const meta = result.materializations.copy!.metadata
      expect(meta).toMatchObject({
        table: 'media',
        rows: 1200,
        source: `s3://${BUCKET}/${prefix}`,
        objects,
        skippedObjects: 0,
      })
      expect(rowsOf(meta.file as string)).toEqual(expected)
      expect(logs.filter((l) => /^loaded s3:\/\/.*: \d+ rows, \d+ bytes$/.test(l))).toHaveLength(objects)
    }
  })

  it('reads an export without a manifest (every *.jsonl under the prefix) and names a bad line', async () => {
    await store.putBytes(BUCKET, 'nomanifest/a.jsonl', Buffer.from(`${record(1)}\n${record(2)}\n`))
    await store.putBytes(BUCKET, 'nomanifest/b.jsonl', Buffer.from(`${record(3)}\n{"id": "x"}\n`))
    await store.putBytes(BUCKET, 'nomanifest/readme.txt', Buffer.from('not data'))
    const dataDir = join(tempDir(), 'data')
    const source = `s3://${BUCKET}/nomanifest/`
    const { result, events } = await run([copy({ dataDir, source, retry: { maxAttempts: 1 } })])
    expect(result.status).toBe('failure')
    expect(failureOf(events)!.error.message).toMatch(
      /s3:\/\/refresh-test\/nomanifest\/b\.jsonl line 2: `id` must be an integer, got "x"/,
    )
    await store.putBytes(BUCKET, 'nomanifest/b.jsonl', Buffer.from(`${record(3)}\n`))
    const again = await run([copy({ dataDir, source })])
    expect(again.result.materializations.copy!.metadata).toMatchObject({ rows: 3, objects: 2 })
  })

  it('names an object that is not valid gzip', async () => {
    const { gzipSync } = await import('node:zlib')
    const good = gzipSync(`${record(1)}\n${record(2)}\n`)
    await store.putBytes(BUCKET, 'badgz/a.ndjson.gz', good.subarray(0, good.length - 12))
    const dataDir = join(tempDir(), 'data')
    const { result, events } = await run([
      copy({ dataDir, source: `s3://${BUCKET}/badgz/`, retry: { maxAttempts: 1 } }),
    ])
    expect(result.status).toBe('failure')
    expect(failureOf(events)!.error.message).toMatch(
      /s3:\/\/refresh-test\/badgz\/a\.ndjson\.gz after line \d+: not valid gzip/,
    )
  })

  it('a retry resumes: only the objects not yet loaded are read again', async () => {
    await exportCatalog(catalogFile, `s3://${BUCKET}/resume/`, { objects: 4, gzip: false, store })
    await store.deleteKeys(BUCKET, ['resume/manifest.json'])
    const key = 'resume/part-00002.ndjson'
    const good = (await store.getBytes(BUCKET, key))!
    const lines = good.toString('utf8').split('\n')
    lines[2] = '{"id": 1, "broken'
    await store.putBytes(BUCKET, key, Buffer.from(lines.join('\n')))

    const dataDir = join(tempDir(), 'data')
    const inner = copy({ dataDir, source: `s3://${BUCKET}/resume/` })
    // the object is fixed between attempt 1 and attempt 2 of the same run
    const wrapped = asset({
      key: 'copy',
      config: copyConfig,
      retry: { maxAttempts: 2, delayMs: 0 },
      async materialize(ctx) {
        if (ctx.attempt === 2) await store.putBytes(BUCKET, key, good)
        return inner.materialize(ctx)
      },
    })
    const { result, events, logs } = await run([wrapped], { copy: { downloadConcurrency: 1 } })
    expect(result.status).toBe('success')
    const retry = events.find((e) => e.type === 'step:retry')
    expect(retry).toMatchObject({ attempt: 1, nextAttempt: 2 })
    expect((retry as Extract<RunEvent, { type: 'step:retry' }>).error.message).toMatch(
      /s3:\/\/refresh-test\/resume\/part-00002\.ndjson line 3: not valid JSON/,
    )
    expect(result.materializations.copy!.metadata).toMatchObject({
      rows: 1200,
      objects: 4,
      skippedObjects: 2,
      loadedObjects: 2,
    })
    expect(logs).toContain('resuming: 2 of 4 object(s) already loaded')
    const loaded = logs.filter((l) => l.startsWith('loaded '))
    // attempt 1: parts 0 and 1; attempt 2: parts 2 and 3 only
    expect(loaded.map((l) => /part-(\d+)/.exec(l)![1])).toEqual(['00000', '00001', '00002', '00003'])
    expect(rowsOf(result.materializations.copy!.metadata.file as string)).toEqual(rowsOf(catalogFile))
  })

  it('an object that does not match the export manifest fails, naming the object', async () => {
    await exportCatalog(catalogFile, `s3://${BUCKET}/tampered/`, { objects: 3, gzip: false, store })
    const key = 'tampered/part-00001.ndjson'
    const bytes = (await store.getBytes(BUCKET, key))!
    // same size, other bytes: only the checksum can tell
    const text = bytes.toString('utf8')
    const at = text.indexOf('"title":"') + 9
    const swapped = text.slice(0, at) + (text[at] === 'Q' ? 'R' : 'Q') + text.slice(at + 1)
    await store.putBytes(BUCKET, key, Buffer.from(swapped))
    const dataDir = join(tempDir(), 'data')
    const { result, events } = await run([
      copy({ dataDir, source: `s3://${BUCKET}/tampered/`, retry: { maxAttempts: 1 } }),
    ])
    expect(result.status).toBe('failure')
    expect(failureOf(events)!.error.message).toMatch(
      /s3:\/\/refresh-test\/tampered\/part-00001\.ndjson: sha256 .* does not match the expected/,
    )
  })

  it('a missing bucket or an empty prefix is a clear error, not retried', async () => {
    const dataDir = join(tempDir(), 'data')
    const missing = await run([copy({ dataDir, source: 's3://no-such-bucket/export/' })])
    expect(missing.result.status).toBe('failure')
    expect(failureOf(missing.events)).toMatchObject({ attempt: 1, retriable: false })
    expect(failureOf(missing.events)!.error.message).toMatch(
      /the S3 bucket no-such-bucket does not exist; create it or check `bucket` in copy\(\{ source \}\)/,
    )
    const empty = await run([copy({ dataDir, source: `s3://${BUCKET}/nothing-here/` })])
    expect(failureOf(empty.events)).toMatchObject({ attempt: 1, retriable: false })
    expect(failureOf(empty.events)!.error.message).toMatch(
      /no export objects .* under s3:\/\/refresh-test\/nothing-here\/; export the catalog there first/,
    )
    expect(() => copy({ source: '/not/s3' })).toThrow(/copy\(\{ source \}\).*s3:\/\/bucket\/prefix/)
  })
})

describe('snapshots published to S3 and the alias on S3', () => {
  /** A client that records the key of every object write, in order. */
  function recordingClient(keys: string[], commands: string[] = []): S3Client {
    const client = new S3Client({
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    })
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Key?: string }
        commands.push(context.commandName ?? '')
        if (/PutObject|CompleteMultipartUpload/.test(context.commandName ?? '') && input.Key)
          keys.push(input.Key)
        return next(args)
      },
      { step: 'initialize' },
    )
    return client
  }

  function chainOnS3(dataDir: string, client: S3Client): AssetDefinition[] {
    return [
      catalog({ dataDir }),
      copy({ dataDir }),
      clean({ dataDir }),
      reindex({ dataDir, shards: 2, runner: localProcessRunner({ processes: 2 }) }),
      // every file in parts (one each here), as large shards would be
      snapshot({
        dataDir,
        publish: `s3://${BUCKET}/pub/`,
        s3: { client },
        upload: { multipartThresholdBytes: 0 },
      }),
      replicas({ dataDir }),
      promote({ dataDir, alias: `s3://${BUCKET}/pub/` }),
    ]
  }
  const config = { catalog: { rows: 1500 }, reindex: { shardRetryDelayMs: 0 } }

  it('publishes every file then the manifest; promote keeps `current` in S3; rollback goes back', async () => {
    const dataDir = join(tempDir(), 'data')
    const keys: string[] = []
    const commands: string[] = []
    const client = recordingClient(keys, commands)
    const assets = chainOnS3(dataDir, client)
    const first = await run(assets, config)
    expect(first.result.status).toBe('success')
    const snap1 = first.result.materializations.snapshot!.metadata
    expect(snap1.published).toBe(`s3://${BUCKET}/pub/snapshots/${snap1.snapshot}/`)
    expect(typeof snap1.probe).toBe('string')

    // every file is there, the manifest was written last, and a file's sha256 is the manifest's
    const base = `pub/snapshots/${snap1.snapshot}/`
    const manifest = (await store.getJson<Manifest>(BUCKET, `${base}manifest.json`))!
    const listed = (await store.list(BUCKET, base)).map((o) => o.key)
    expect(listed.sort()).toEqual(
      [...manifest.files.map((f) => base + f.name), `${base}manifest.json`].sort(),
    )
    const mine = keys.filter((k) => k.startsWith(base))
    expect(mine.at(-1)).toBe(`${base}manifest.json`)
    expect(mine).toHaveLength(manifest.files.length + 1)
    expect(commands.filter((c) => c === 'CompleteMultipartUploadCommand')).toHaveLength(manifest.files.length)
    const file = join(tempDir(), 'shard.db')
    const down = await store.download(BUCKET, base + manifest.files[0]!.name, file)
    expect(down.sha256).toBe(manifest.files[0]!.sha256)
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(manifest.files[0]!.sha256)

    // the alias is an object in S3 (no local current.json), with documents and probe
    const aliasStore = s3AliasStore(`s3://${BUCKET}/pub/`)
    const promoteDef = assets.at(-1)!
    expect(partsOf(promoteDef).alias!.where).toBe(`s3://${BUCKET}/pub/current.json`)
    expect(first.result.materializations.promote!.metadata).toMatchObject({
      alias: `s3://${BUCKET}/pub/current.json`,
    })
    const one = (await store.getJson<Alias>(BUCKET, 'pub/current.json'))!
    expect(one).toMatchObject({
      version: 1,
      current: { snapshot: snap1.snapshot, documents: snap1.documents, probe: snap1.probe },
      previous: [],
    })
    expect(readFileSync(join(dataDir, 'snapshots', snap1.snapshot as string, 'manifest.json'))).toBeTruthy()
    expect(() => readFileSync(layout(dataDir).alias)).toThrow()

    const second = await run(assets, config)
    expect(second.result.status).toBe('success')
    const snap2 = second.result.materializations.snapshot!.metadata.snapshot
    expect(await aliasStore.read()).toMatchObject({
      current: { snapshot: snap2 },
      previous: [{ snapshot: snap1.snapshot }],
    })

    const back = await rollbackPromotion(dataDir, { alias: aliasStore })
    expect(back).toMatchObject({ from: { snapshot: snap2 }, to: { snapshot: snap1.snapshot } })
    expect(back.replicas).toEqual(['replica-1', 'replica-2'])
    expect((await store.getJson<Alias>(BUCKET, 'pub/current.json'))!).toMatchObject({
      current: { snapshot: snap1.snapshot },
      previous: [],
    })
    await expect(rollbackPromotion(dataDir, { alias: aliasStore })).rejects.toThrow(
      /s3:\/\/refresh-test\/pub\/current\.json has no previous index to roll back to/,
    )
    aliasStore.close()
    client.destroy()
  })

  it('rollback rolls a replica fleet onto the previous entry, with what a replica must answer', async () => {
    const dataDir = join(tempDir(), 'data')
    const aliasStore = s3AliasStore(`s3://${BUCKET}/fleet/`)
    const entry = (n: number) => ({
      snapshot: `snap-ebs-${n}`,
      index: `idx-${n}`,
      runId: `run-${n}`,
      promotedAt: '',
      documents: 100 + n,
      probe: 'fox',
    })
    await aliasStore.write({ version: 1, current: entry(2), previous: [entry(1)] })
    const targets: RolloutTarget[] = []
    const fleet: ReplicaFleet = {
      name: 'test-fleet',
      async rollout(target) {
        targets.push(target)
        return { updated: ['i-1', 'i-2'], previousSnapshot: 'snap-ebs-2' }
      },
    }
    const back = await rollbackPromotion(dataDir, { alias: aliasStore, fleet })
    expect(targets).toEqual([{ snapshot: 'snap-ebs-1', index: 'idx-1', documents: 101, probe: 'fox' }])
    expect(back.replicas).toEqual(['i-1', 'i-2'])
    expect(await aliasStore.read()).toMatchObject({ current: { snapshot: 'snap-ebs-1' }, previous: [] })
    aliasStore.close()
  })
})

function record(id: number): string {
  return JSON.stringify({
    id,
    identifier: `id${id}`,
    title: `Red fox ${id}`,
    creator: 'Ada Rossi',
    url: `https://cdn.example/${id}.jpg`,
    license: 'by',
    provider: 'flickr',
    tags: [{ name: 'fox', accuracy: 0.95 }],
    created_at: 1_500_000_000,
    updated_at: 1_500_000_100,
  })
}
