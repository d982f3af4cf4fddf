import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { BackendContext, SnapshotInput } from '../../assets/backends.js'
import { ebsSnapshots } from '../../assets/ebs.js'
import type { Manifest } from '../../assets/state.js'
import { TAG } from '../../aws/service.js'
import { materialize } from '../../core/materialize.js'
import { Ec2Mock } from '../ec2-mock.js'
import { tempDir } from '../helpers.js'
import { chain, small } from './chain.js'

const VOLUME = 'vol-0index'

/** One real index, built once by the local chain on a directory that stands for the EBS volume. */
let root: string
let volume: string
let input: SnapshotInput
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'refresh-ebs-'))
  volume = join(root, 'volume')
  const dataDir = join(volume, 'data')
  const result = await materialize(chain(dataDir).slice(0, 4), {
    store: join(root, 'refresh.db'),
    config: small({ catalog: { rows: 600 } }),
  })
  expect(result.status).toBe('success')
  const meta = result.materializations.reindex!.metadata as { index: string; dir: string; documents: number }
  input = { index: meta.index, indexDir: meta.dir, documents: meta.documents }
}, 60_000)
afterAll(() => rmSync(root, { recursive: true, force: true }))

let mocks: Ec2Mock[] = []
afterEach(() => {
  for (const m of mocks) m.restore()
  mocks = []
})

function ec2(options: Partial<ConstructorParameters<typeof Ec2Mock>[0]> = {}): Ec2Mock {
  const m = new Ec2Mock({ stateDir: tempDir(), volumes: { [VOLUME]: volume }, ...options })
  mocks.push(m)
  return m
}

function context(progress: Array<[number, number | null]> = [], logs: string[] = []): BackendContext {
  return {
    runId: 'run-1',
    asset: 'snapshot',
    signal: new AbortController().signal,
    log: (m) => logs.push(m),
    progress: (done, total) => progress.push([done, total]),
  }
}

describe('EBS snapshots', () => {
  it('snapshots the volume with its tags, reports progress to completion and writes a checked manifest', async () => {
    const mock = ec2()
    const backend = ebsSnapshots({
      volumeId: VOLUME,
      mountPath: volume,
      pollIntervalMs: 1,
      client: mock.client,
    })
    const progress: Array<[number, number | null]> = []
    const meta = await backend.create(input, context(progress))

    expect(meta).toMatchObject({
      snapshot: expect.stringMatching(/^snap-/),
      index: input.index,
      documents: input.documents,
      probe: expect.any(String),
      path: `data/indexes/${input.index}`,
      volumeId: VOLUME,
      encrypted: true,
      sourceSnapshot: null,
      removed: [],
    })
    // Progress rose over the describes and reached 100 of 100
    expect(progress.length).toBeGreaterThanOrEqual(3)
    expect(progress.map(([d]) => d)).toEqual([...progress.map(([d]) => d)].sort((a, b) => a - b))
    expect(progress.some(([d]) => d > 0 && d < 100)).toBe(true)
    expect(progress.at(-1)).toEqual([100, 100])

    // tagged in the CreateSnapshot call itself
    const tags = mock.createSnapshotInputs[0]!.TagSpecifications![0]!
    expect(tags.ResourceType).toBe('snapshot')
    expect(tags.Tags).toEqual(
      expect.arrayContaining([
        { Key: TAG.asset, Value: 'snapshot' },
        { Key: TAG.run, Value: 'run-1' },
        { Key: TAG.index, Value: input.index },
        { Key: TAG.managedBy, Value: 'refresh' },
      ]),
    )

    // the snapshot holds the index and a manifest whose checksums match its files
    const dir = join(mock.snapshotDir(meta.snapshot), meta.path as string)
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest
    expect(manifest).toMatchObject({
      id: input.index,
      index: input.index,
      documents: input.documents,
      shards: 3,
    })
    expect(manifest.probe).toBe(meta.probe)
    for (const f of manifest.files) {
      expect(
        createHash('sha256')
          .update(readFileSync(join(dir, f.name)))
          .digest('hex'),
      ).toBe(f.sha256)
    }

    // its tags give back the rollout target (for a rollback that knows only the id)
    expect(await backend.target(meta.snapshot)).toEqual({
      snapshot: meta.snapshot,
      index: input.index,
      documents: input.documents,
      probe: meta.probe,
      path: meta.path,
    })

    // the next snapshot names this one as its source
    const next = await backend.create(input, context())
    expect(next.sourceSnapshot).toBe(meta.snapshot)
    expect(mock.createSnapshotInputs[1]!.TagSpecifications![0]!.Tags).toContainEqual({
      Key: TAG.sourceSnapshot,
      Value: meta.snapshot,
    })
  })

  it('refuses an unencrypted snapshot and deletes it, unless allowUnencrypted', async () => {
    const mock = ec2({ encrypted: false })
    const backend = ebsSnapshots({
      volumeId: VOLUME,
      mountPath: volume,
      pollIntervalMs: 1,
      client: mock.client,
    })
    const error = await backend.create(input, context()).catch((e: Error) => e)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(
      /EBS snapshot (snap-\S+) of vol-0index is not encrypted, so it was deleted/,
    )
    expect((error as Error).message).toMatch(/allowUnencrypted: true/)
    const id = /(snap-\w+)/.exec((error as Error).message)![1]!
    expect(mock.deleted).toEqual([id])
    expect(mock.snapshots.size).toBe(0)

    const allowed = ebsSnapshots({
      volumeId: VOLUME,
      mountPath: volume,
      allowUnencrypted: true,
      pollIntervalMs: 1,
      client: mock.client,
    })
    expect(await allowed.create(input, context())).toMatchObject({ encrypted: false })
  })

  it('keeps the last K and never deletes a snapshot a replica or protect() uses', async () => {
    const mock = ec2()
    const ours = { [TAG.managedBy]: 'refresh' }
    const [inUse, protectedOne, old, recent] = [1, 2, 3, 4].map(() =>
      mock.addSnapshot({ volumeId: VOLUME, tags: ours }),
    )
    const otherVolume = mock.addSnapshot({ volumeId: 'vol-other', tags: ours })
    const notOurs = mock.addSnapshot({ volumeId: VOLUME })
    mock.addInstance({ [TAG.fleet]: 'search', [TAG.snapshot]: inUse! })
    const backend = ebsSnapshots({
      volumeId: VOLUME,
      mountPath: volume,
      keep: 2,
      pollIntervalMs: 1,
      client: mock.client,
      protect: async () => [protectedOne!],
    })
    const meta = await backend.create(input, context())
    expect(meta.removed).toEqual([old])
    expect(mock.deleted).toEqual([old])
    for (const id of [inUse, protectedOne, recent, otherVolume, notOurs, meta.snapshot])
      expect(mock.snapshots.has(id!)).toBe(true)

    // once the replica is gone, its snapshot is beyond K and goes too
    for (const i of mock.instances.values()) i.state = 'terminated'
    const again = await backend.create(input, context())
    expect(new Set(again.removed as string[])).toEqual(new Set([inUse, recent]))
    expect(mock.snapshots.has(protectedOne!)).toBe(true)
  })

  it('fails with a clear error when the snapshot does not complete in time', async () => {
    const mock = ec2({ stuck: true })
    const backend = ebsSnapshots({
      volumeId: VOLUME,
      mountPath: volume,
      waitTimeoutMs: 50,
      pollIntervalMs: 5,
      client: mock.client,
    })
    await expect(backend.create(input, context())).rejects.toThrow(
      /EBS snapshot snap-\w+ of vol-0index did not complete within 50 ms \(at \d+%, state pending\); raise `waitTimeoutMs`/,
    )
  })

  it('refuses an index that is not on the volume', async () => {
    const mock = ec2()
    const backend = ebsSnapshots({
      volumeId: VOLUME,
      mountPath: join(root, 'elsewhere'),
      client: mock.client,
    })
    await expect(backend.create(input, context())).rejects.toThrow(
      /is not under .*elsewhere where volume vol-0index is mounted.*Set `mountPath`/,
    )
    expect(mock.calls.CreateSnapshot).toBeUndefined()
  })

  it("recover deletes an interrupted run's failed snapshot and reports a pending one", async () => {
    const mock = ec2()
    const tags = (run: string) => ({ [TAG.managedBy]: 'refresh', [TAG.run]: run })
    const failed = mock.addSnapshot({ volumeId: VOLUME, tags: tags('run-x'), state: 'error' })
    const pending = mock.addSnapshot({ volumeId: VOLUME, tags: tags('run-x'), state: 'pending' })
    const other = mock.addSnapshot({ volumeId: VOLUME, tags: tags('run-y'), state: 'error' })
    const backend = ebsSnapshots({ volumeId: VOLUME, mountPath: volume, client: mock.client })
    const handled = await backend.recover!(['run-x'])
    expect(handled).toContain(`${failed} (error, deleted)`)
    expect(handled.some((h) => h.startsWith(pending))).toBe(true)
    expect(mock.deleted).toEqual([failed])
    expect(mock.snapshots.has(other)).toBe(true)
  })

  it('names the IAM action when CreateSnapshot is denied', async () => {
    const mock = ec2({ deny: ['CreateSnapshot'] })
    const backend = ebsSnapshots({ volumeId: VOLUME, mountPath: volume, client: mock.client })
    await expect(backend.create(input, context())).rejects.toThrow(
      /`ec2:CreateSnapshot` on volume vol-0index/,
    )
  })
})
