import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { layout } from '../../assets/layout.js'
import { reindex } from '../../assets/reindex.js'
import { searchPromoted } from '../../assets/search.js'
import { readAlias, readReplica } from '../../assets/state.js'
import { CanceledError } from '../../core/errors.js'
import type { RunEvent } from '../../core/events.js'
import { materialize } from '../../core/materialize.js'
import { localProcessRunner } from '../../runners/local.js'
import { tempDir } from '../helpers.js'
import { chain, small } from './chain.js'

/** A data directory with one successful refresh in it (the index a failure must not replace). */
async function refreshed() {
  const dir = tempDir()
  const dataDir = join(dir, 'data')
  const store = join(dir, 'refresh.db')
  const first = await materialize(chain(dataDir), { store, config: small() })
  expect(first.status).toBe('success')
  const snapshot = first.materializations.snapshot!.metadata.snapshot as string
  const index = first.materializations.reindex!.metadata.index as string
  return { dataDir, store, snapshot, index, paths: layout(dataDir) }
}

const logs = (events: RunEvent[], step: string) =>
  events.flatMap((e) => (e.type === 'log' && e.step === step ? [e.message] : []))

describe('a shard worker that fails', () => {
  for (const failMode of ['exit', 'crash'] as const) {
    it(`(${failMode}) is retried alone, and the index is complete`, async () => {
      const dataDir = join(tempDir(), 'data')
      const events: RunEvent[] = []
      const result = await materialize(chain(dataDir), {
        config: small({ reindex: { failShard: 1, failMode, failAttempts: 1 } }),
        onEvent: (e) => events.push(e),
      })
      expect(result.status).toBe('success')
      const meta = result.materializations.reindex!.metadata
      expect((meta.shardTimings as Array<{ attempts: number }>).map((s) => s.attempts)).toEqual([1, 2, 1])
      expect(meta.documents).toBe(result.materializations.clean!.metadata.rows)
      expect(result.steps.reindex!.attempts).toBe(1)
      const failures = logs(events, 'reindex').filter((l) => l.includes('failed'))
      expect(failures).toHaveLength(1)
      expect(failures[0]).toMatch(
        failMode === 'exit'
          ? /^shard-1 attempt 1\/3 failed: .*exited with code 3.*retrying this shard alone$/
          : /^shard-1 attempt 1\/3 failed: .*killed by SIGKILL/,
      )
    })
  }

  it('fails the step after its last attempt; nothing downstream runs and the previous index stays promoted', async () => {
    const before = await refreshed()
    const result = await materialize(chain(before.dataDir), {
      store: before.store,
      config: small({ reindex: { failShard: 2, failAttempts: 0, shardAttempts: 2 } }),
    })
    expect(result.status).toBe('failure')
    expect(result.steps.reindex).toMatchObject({ status: 'failed', attempts: 1 })
    expect(result.steps.reindex!.error!.message).toMatch(
      /shard-2 failed after 2 attempts: .*exited with code 3/,
    )
    for (const key of ['snapshot', 'replicas', 'promote']) expect(result.steps[key]!.status).toBe('skipped')
    // the half-built index is gone; the alias and the replicas still serve the first refresh
    expect(existsSync(before.paths.index(`idx-${result.runId}`))).toBe(false)
    expect(readAlias(before.paths)!.current).toMatchObject({ snapshot: before.snapshot, index: before.index })
    expect(searchPromoted(before.dataDir, 'fox')).toMatchObject({
      snapshot: before.snapshot,
      replica: 'replica-1',
    })
  })
})

describe('a replica that fails its readiness check', () => {
  it('rolls back every switched replica; the error names the replica and why', async () => {
    const before = await refreshed()
    const result = await materialize(chain(before.dataDir), {
      store: before.store,
      config: small({ replicas: { replicas: 3, failReplica: 2 } }),
    })
    expect(result.status).toBe('failure')
    const message = result.steps.replicas!.error!.message
    expect(message).toMatch(/^replica replica-2 failed while switching to snap-\w+: readiness check failed/)
    expect(message).toContain(`rolled back replica-2 -> ${before.snapshot}, replica-1 -> ${before.snapshot}`)
    expect(result.steps.promote!.status).toBe('skipped')
    expect(readReplica(before.paths, 'replica-1')!.snapshot).toBe(before.snapshot)
    expect(readReplica(before.paths, 'replica-2')!.snapshot).toBe(before.snapshot)
    expect(readReplica(before.paths, 'replica-3')).toBeUndefined() // never reached
    expect(readAlias(before.paths)!.current.snapshot).toBe(before.snapshot)
    expect(searchPromoted(before.dataDir, 'fox').replica).toBe('replica-1')
  })

  it('that times out is rolled back the same way', async () => {
    const before = await refreshed()
    const result = await materialize(chain(before.dataDir), {
      store: before.store,
      config: small({ replicas: { failReplica: 1, failMode: 'timeout', readinessTimeoutMs: 200 } }),
    })
    expect(result.steps.replicas!.error!.message).toMatch(
      /replica replica-1 .*did not pass its readiness check within 200 ms; rolled back replica-1 -> snap-/,
    )
    expect(readReplica(before.paths, 'replica-1')!.snapshot).toBe(before.snapshot)
  })

  it('on a first deployment leaves the replicas serving nothing rather than a bad snapshot', async () => {
    const dataDir = join(tempDir(), 'data')
    const result = await materialize(chain(dataDir), { config: small({ replicas: { failReplica: 1 } }) })
    expect(result.steps.replicas!.error!.message).toContain('rolled back replica-1 -> nothing')
    expect(readReplica(layout(dataDir), 'replica-1')).toBeUndefined()
    expect(readAlias(layout(dataDir))).toBeUndefined()
  })
})

describe('a corrupt snapshot file', () => {
  it('fails the snapshot step on the checksum; nothing downstream runs, no partial snapshot is left', async () => {
    const before = await refreshed()
    const result = await materialize(chain(before.dataDir), {
      store: before.store,
      config: small({ snapshot: { corrupt: true } }),
    })
    expect(result.steps.snapshot).toMatchObject({ status: 'failed', attempts: 2 })
    expect(result.steps.snapshot!.error!.message).toMatch(
      /shard-000\.db does not match its checksum after writing .*the copy is corrupt and was discarded/,
    )
    expect(result.steps.replicas!.status).toBe('skipped')
    expect(result.steps.promote!.status).toBe('skipped')
    expect(readdirSync(before.paths.snapshots)).toEqual([before.snapshot])
    expect(readAlias(before.paths)!.current.snapshot).toBe(before.snapshot)
  })
})

describe('an unwritable data directory', () => {
  it('fails at once with an error naming the path and the fix', async () => {
    const dir = tempDir()
    const blocker = join(dir, 'not-a-dir')
    writeFileSync(blocker, 'a file where the data directory should go')
    const dataDir = join(blocker, 'data')
    const result = await materialize(chain(dataDir), { config: small() })
    expect(result.steps.catalog).toMatchObject({ status: 'failed', attempts: 1 })
    const { name, message } = result.steps.catalog!.error!
    expect(name).toBe('NonRetriableError')
    expect(message).toContain(`cannot write to the data directory ${dataDir}`)
    expect(message).toContain('make it writable or set `dataDir` to another directory')
  })
})

describe('cancel during reindex', () => {
  it('stops every shard worker process and ends the run canceled', async () => {
    const dir = tempDir()
    const dataDir = join(dir, 'data')
    // shard workers that write their pid, report progress and then hang
    const script = join(dir, 'hang.cjs')
    writeFileSync(
      script,
      `require('fs').writeFileSync(process.argv[2] + '/' + process.pid + '.pid', '')
       process.send({ type: 'progress', done: 1, total: 10 }); setTimeout(() => {}, 60_000)`,
    )
    const pidDir = join(dir, 'pids')
    mkdirSync(pidDir)
    const runner = localProcessRunner({
      processes: 3,
      killGraceMs: 500,
      command: () => ({ file: process.execPath, args: [script, pidDir] }),
    })
    const assets = chain(dataDir).map((a) =>
      a.key === 'reindex' ? reindex({ dataDir, shards: 3, runner }) : a,
    )
    const controller = new AbortController()
    const result = await materialize(assets, {
      config: small(),
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === 'step:progress' && e.step === 'reindex' && readdirSync(pidDir).length === 3)
          controller.abort(new CanceledError('test cancel'))
      },
    })
    expect(result.status).toBe('canceled')
    expect(result.steps.reindex!.status).toBe('canceled')
    const pids = readdirSync(pidDir).map((f) => Number.parseInt(f, 10))
    expect(pids).toHaveLength(3)
    // the stop is under way when the step ends; give the kills a moment to land
    for (let i = 0; i < 50 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50))
    expect(pids.filter(alive)).toEqual([])
  })
})

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
