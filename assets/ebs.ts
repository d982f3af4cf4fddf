/**
 * The EBS snapshot backend of `snapshot`: the index is built on an EBS volume mounted on the
 * orchestrator, and a snapshot is an EBS snapshot of that volume. The manifest (files with their
 * sha256, documents, probe word) is written into the index directory and fsynced before the
 * snapshot starts, so every snapshot carries the manifest a replica checks itself against.
 * The snapshot is tagged in the same CreateSnapshot call (no window where it exists untagged),
 * waited for with a bounded waiter, verified encrypted, and the old ones are pruned by tag,
 * never one a replica or the promoted alias still uses.
 */
import { open, readdir } from 'node:fs/promises'
import { isAbsolute, join, relative, resolve } from 'node:path'
import type { Snapshot, Tag } from '@aws-sdk/client-ec2'
import { Ec2Api, tagOf } from '../aws/ec2.js'
import { type AwsCallOptions, TAG } from '../aws/service.js'
import type { AwsSdkClient } from '../aws/types.js'
import { sleep } from '../core/async.js'
import { ConfigError, NonRetriableError } from '../core/errors.js'
import type { JsonObject } from '../core/json.js'
import type { BackendContext, RolloutTarget, SnapshotBackend, SnapshotInput } from './backends.js'
import { writeJsonAtomic } from './layout.js'
import { hashFile, probeTerm } from './snapshot.js'
import type { Manifest } from './state.js'

export interface EbsSnapshotsOptions extends AwsCallOptions {
  /** The EBS volume that holds the index (`vol-…`). */
  volumeId: string
  /** Where that volume is mounted on the orchestrator: the index directory must be under it. */
  mountPath: string
  /** Snapshots of this volume (made by refresh) to keep, the newest (default 3). */
  keep?: number
  /** Accept an unencrypted snapshot (default false: it fails the step and is deleted). */
  allowUnencrypted?: boolean
  /** How long to wait for the snapshot to complete (default 30 min). */
  waitTimeoutMs?: number
  /** How often the snapshot's progress is read (default 15 s). */
  pollIntervalMs?: number
  /** Snapshot ids that must never be deleted (for example the promoted alias's, current and previous). */
  protect?: () => Promise<Iterable<string>>
  client?: AwsSdkClient
}

const WHERE = 'ebsSnapshots({...})'

export interface EbsSnapshotBackend extends SnapshotBackend {
  readonly volumeId: string
  /**
   * The rollout target of one of this backend's snapshots, from its tags (for
   * `refresh promote --rollback` onto an EC2 fleet, which knows only the snapshot id).
   */
  target(snapshot: string): Promise<RolloutTarget>
}

/** Tags that carry a snapshot's rollout target (beside TAG.index), read back by `target()`. */
export const TARGET_TAG = {
  documents: 'refresh:documents',
  path: 'refresh:path',
  probe: 'refresh:probe',
} as const

function fieldOf(action: string, name: string, message: string): string {
  if (/volume/i.test(`${name} ${message}`)) return 'volumeId'
  if (action === 'DescribeInstances') return 'the replica fleet'
  return 'volumeId'
}

/** Snapshots of an EBS volume, taken after the index is written and its manifest fsynced. */
export function ebsSnapshots(options: EbsSnapshotsOptions): EbsSnapshotBackend {
  if (!options.volumeId)
    throw new ConfigError('ebsSnapshots: `volumeId` is required (the vol-… of the index volume)')
  if (!options.mountPath)
    throw new ConfigError('ebsSnapshots: `mountPath` is required (where that volume is mounted on this host)')
  const keep = options.keep ?? 3
  if (!Number.isInteger(keep) || keep < 1)
    throw new ConfigError(`ebsSnapshots: \`keep\` must be 1 or more (got ${keep})`)
  const mountPath = resolve(options.mountPath)
  const waitTimeoutMs = options.waitTimeoutMs ?? 30 * 60_000
  const pollMs = options.pollIntervalMs ?? 15_000
  const api = new Ec2Api(options, WHERE, fieldOf)
  const volume = options.volumeId
  const managed = [
    { Name: 'volume-id', Values: [volume] },
    { Name: `tag:${TAG.managedBy}`, Values: ['refresh'] },
  ]

  /** The snapshot's state, waited for until `completed` (progress reported), `error` or the timeout. */
  async function waitCompleted(id: string, ctx: BackendContext): Promise<Snapshot> {
    const deadline = Date.now() + waitTimeoutMs
    let last = -1
    for (;;) {
      if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error('canceled')
      const [snap] = await api.describeSnapshots([{ Name: 'snapshot-id', Values: [id] }], `snapshot ${id}`)
      if (!snap)
        throw new Error(`EBS snapshot ${id} of ${volume} is gone (DescribeSnapshots no longer lists it)`)
      const percent = Number.parseInt(snap.Progress ?? '', 10)
      if (snap.State === 'completed') {
        ctx.progress(100, 100)
        return snap
      }
      if (snap.State === 'error') {
        throw new Error(
          `EBS snapshot ${id} of ${volume} failed (state error${snap.StateMessage ? `: ${snap.StateMessage}` : ''}); the step can be retried`,
        )
      }
      if (Number.isFinite(percent) && percent !== last) {
        last = percent
        ctx.progress(percent, 100)
      }
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new NonRetriableError(
          `EBS snapshot ${id} of ${volume} did not complete within ${waitTimeoutMs} ms (at ${snap.Progress ?? '0%'}, state ${snap.State}); raise \`waitTimeoutMs\` in ${WHERE}. The snapshot is left to finish; retention removes it later.`,
        )
      }
      await sleep(Math.min(pollMs, left), ctx.signal)
    }
  }

  /** Snapshot ids the replicas of any refresh fleet run from (pending or running instances). */
  async function usedByReplicas(): Promise<Set<string>> {
    const instances = await api.describeInstances(
      {
        filters: [
          { Name: 'tag-key', Values: [TAG.fleet] },
          { Name: 'instance-state-name', Values: ['pending', 'running'] },
        ],
      },
      'instances tagged refresh:fleet',
    )
    const used = new Set<string>()
    for (const i of instances) {
      const s = tagOf(i.Tags, TAG.snapshot)
      if (s) used.add(s)
    }
    return used
  }

  /** Keeps the newest `keep` completed snapshots (and `current`) and every one in use; deletes the rest. */
  async function prune(current: string, ctx: BackendContext): Promise<string[]> {
    const all = (await api.describeSnapshots(managed, `snapshots of ${volume}`)).sort(
      (a, b) => (b.StartTime?.getTime() ?? 0) - (a.StartTime?.getTime() ?? 0),
    )
    const kept = new Set([current])
    for (const s of all) {
      if (kept.size >= keep) break
      if (s.State === 'completed' && s.SnapshotId) kept.add(s.SnapshotId)
    }
    const inUse = await usedByReplicas()
    for (const id of (await options.protect?.()) ?? []) inUse.add(id)
    const removed: string[] = []
    for (const s of all) {
      const id = s.SnapshotId
      // a pending one may be another run's snapshot in progress: left for a later pass
      if (!id || kept.has(id) || inUse.has(id) || s.State === 'pending') continue
      await deleteSnapshot(id)
      removed.push(id)
    }
    const spared = all.filter((s) => s.SnapshotId && !kept.has(s.SnapshotId) && inUse.has(s.SnapshotId))
    if (spared.length)
      ctx.log(`kept snapshot(s) still in use: ${spared.map((s) => s.SnapshotId).join(', ')}`, 'debug')
    return removed
  }

  function deleteSnapshot(id: string) {
    return api.call('DeleteSnapshot', `snapshot ${id} (tagged ${TAG.managedBy}=refresh)`, (sdk, c) =>
      c.send(new sdk.DeleteSnapshotCommand({ SnapshotId: id })),
    )
  }

  return {
    name: 'ebs',
    volumeId: volume,
    async create(input: SnapshotInput, ctx: BackendContext) {
      const indexDir = resolve(input.indexDir)
      const path = relative(mountPath, indexDir)
      if (path.startsWith('..') || isAbsolute(path)) {
        throw new NonRetriableError(
          `the index ${input.index} is in ${indexDir}, which is not under ${mountPath} where volume ${volume} is mounted; an EBS snapshot of that volume would not contain it. Set \`mountPath\` in ${WHERE} to the volume's mount point, or \`dataDir\` to a directory on that volume.`,
        )
      }
      const manifest = await writeManifest(indexDir, input, ctx)
      const previous = (await api.describeSnapshots(managed, `snapshots of ${volume}`))
        .filter((s) => s.State === 'completed')
        .sort((a, b) => (b.StartTime?.getTime() ?? 0) - (a.StartTime?.getTime() ?? 0))[0]?.SnapshotId
      const tags: Tag[] = [
        { Key: 'Name', Value: `refresh ${input.index}` },
        { Key: TAG.asset, Value: ctx.asset },
        { Key: TAG.run, Value: ctx.runId },
        { Key: TAG.index, Value: input.index },
        { Key: TAG.managedBy, Value: 'refresh' },
        ...(previous ? [{ Key: TAG.sourceSnapshot, Value: previous }] : []),
        // what a rollout onto this snapshot needs, so a rollback can find it from the id alone
        { Key: TARGET_TAG.documents, Value: String(input.documents) },
        { Key: TARGET_TAG.path, Value: path },
        ...(manifest.probe ? [{ Key: TARGET_TAG.probe, Value: manifest.probe }] : []),
      ]
      const created = await api.call('CreateSnapshot', `volume ${volume}`, (sdk, c) =>
        c.send(
          new sdk.CreateSnapshotCommand({
            VolumeId: volume,
            Description: `refresh index ${input.index} (run ${ctx.runId})`,
            TagSpecifications: [{ ResourceType: 'snapshot', Tags: tags }],
          }),
        ),
      )
      const id = created.SnapshotId
      if (!id) throw new Error(`EC2 CreateSnapshot of ${volume} answered without a snapshot id`)
      ctx.log(`EBS snapshot ${id} of ${volume} started (index ${input.index})`)
      const done = await waitCompleted(id, ctx)
      const encrypted = done.Encrypted === true
      if (!encrypted && !options.allowUnencrypted) {
        await deleteSnapshot(id).catch((error: unknown) =>
          ctx.log(`could not delete the unencrypted snapshot ${id}: ${(error as Error).message}`, 'warn'),
        )
        throw new NonRetriableError(
          `EBS snapshot ${id} of ${volume} is not encrypted, so it was deleted; encrypt the volume (or enable EBS encryption by default), or set \`allowUnencrypted: true\` in ${WHERE} to accept it.`,
        )
      }
      const removed = await prune(id, ctx)
      if (removed.length) ctx.log(`removed old EBS snapshot(s): ${removed.join(', ')}`)
      const metadata: JsonObject & { snapshot: string } = {
        snapshot: id,
        index: input.index,
        documents: input.documents,
        probe: manifest.probe,
        path,
        volumeId: volume,
        encrypted,
        sourceSnapshot: previous ?? null,
        files: manifest.files.length,
        bytes: manifest.files.reduce((a, f) => a + f.bytes, 0),
        removed,
      }
      return metadata
    },
    async target(snapshot: string): Promise<RolloutTarget> {
      const [snap] = await api.describeSnapshots(
        [{ Name: 'snapshot-id', Values: [snapshot] }],
        `snapshot ${snapshot}`,
      )
      const index = tagOf(snap?.Tags, TAG.index)
      const documents = Number(tagOf(snap?.Tags, TARGET_TAG.documents))
      if (!snap || !index || !Number.isInteger(documents)) {
        throw new Error(
          `EBS snapshot ${snapshot} ${snap ? 'has no refresh tags (index, documents)' : 'is gone'}; it cannot be rolled out to.`,
        )
      }
      const path = tagOf(snap.Tags, TARGET_TAG.path)
      return {
        snapshot,
        index,
        documents,
        probe: tagOf(snap.Tags, TARGET_TAG.probe) ?? null,
        ...(path === undefined ? {} : { path }),
      }
    },
    /**
     * An interrupted run's snapshot: one in `error` state is deleted; one still pending is left
     * to finish (EC2 cannot cancel it) and reported, and retention removes it later.
     */
    async recover(runIds: readonly string[]) {
      if (runIds.length === 0) return []
      const found = await api.describeSnapshots(
        [...managed, { Name: `tag:${TAG.run}`, Values: [...runIds] }],
        `snapshots of ${volume}`,
      )
      const handled: string[] = []
      for (const s of found) {
        if (!s.SnapshotId) continue
        if (s.State === 'error') {
          await deleteSnapshot(s.SnapshotId)
          handled.push(`${s.SnapshotId} (error, deleted)`)
        } else if (s.State === 'pending') {
          handled.push(`${s.SnapshotId} (pending, left for retention)`)
        }
      }
      return handled
    },
  }
}

/**
 * Writes the index's manifest (the Manifest of assets/state.ts; its id is the index name, as the
 * EBS snapshot id is not known yet) and fsyncs every file and the directory, so the snapshot holds
 * the bytes the manifest describes.
 */
async function writeManifest(indexDir: string, input: SnapshotInput, ctx: BackendContext): Promise<Manifest> {
  let names: string[]
  try {
    names = (await readdir(indexDir)).filter((f) => f.endsWith('.db')).sort()
  } catch (cause) {
    throw new Error(
      `the index ${input.index} is gone from ${indexDir}; run \`refresh run reindex+\` to rebuild it`,
      { cause },
    )
  }
  const files: Manifest['files'] = []
  for (const name of names) {
    const file = join(indexDir, name)
    const fd = await open(file, 'r')
    try {
      await fd.sync()
      files.push({ name, bytes: (await fd.stat()).size, sha256: await hashFile(file, ctx.signal) })
    } finally {
      await fd.close()
    }
  }
  const manifest: Manifest = {
    id: input.index,
    index: input.index,
    sourceRun: ctx.runId,
    createdAt: new Date().toISOString(),
    documents: input.documents,
    shards: names.length,
    probe: names[0] ? probeTerm(join(indexDir, names[0])) : null,
    files,
  }
  writeJsonAtomic(join(indexDir, 'manifest.json'), manifest)
  const dir = await open(indexDir, 'r')
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
  return manifest
}
