/**
 * Reindex on ECS through S3 against the local process pool, at the same shard count and on the
 * same cleaned table. The ECS side is the test harness in process mode (each task is a real
 * `refresh worker` process, as a task's container would run) and a real local S3 server
 * (s3rver): the cleaned database goes up, each worker downloads it, builds its range and uploads
 * its shard, the runner polls the statuses in S3, and the shards come back checked. The
 * harness and the server live with the tests and load through jiti, so that nothing from test/
 * is compiled into dist/.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createJiti } from 'jiti'
import { catalog } from '../assets/catalog.js'
import { clean } from '../assets/clean.js'
import { copy } from '../assets/copy.js'
import { reindex } from '../assets/reindex.js'
import type { AssetDefinition } from '../core/definitions.js'
import type { RunEvent } from '../core/events.js'
import { materialize } from '../core/materialize.js'
import { ecsRunner } from '../runners/ecs.js'
import { localProcessRunner } from '../runners/local.js'
import { median } from './lib.js'

interface Harness {
  client: import('@aws-sdk/client-ecs').ECSClient
  restore(): void
}
interface HarnessModule {
  EcsHarness: new (options: { stateDir: string; mode: 'process' }) => Harness
  CLUSTER: string
  FAMILY: string
}
interface S3Module {
  startLocalS3(buckets: string[]): Promise<{ close(): Promise<void> }>
}

const ROWS = 400_000
const SHARDS = 4
const REPEAT = 3
const POLL_MS = 250

export default async function bench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-reindex-aws-bench-'))
  const root = join(import.meta.dirname, '..', '..')
  const jiti = createJiti(import.meta.url)
  const { startLocalS3 } = await jiti.import<S3Module>(join(root, 'test', 's3-server.ts'))
  const { EcsHarness, CLUSTER, FAMILY } = await jiti.import<HarnessModule>(
    join(root, 'test', 'runners', 'ecs-harness.ts'),
  )
  const s3 = await startLocalS3(['refresh-bench'])
  const harness = new EcsHarness({ stateDir: join(dir, 'ecs'), mode: 'process' })
  const dataDir = join(dir, 'data')
  const store = join(dir, 'refresh.db')
  const upstream = [catalog({ dataDir }), copy({ dataDir }), clean({ dataDir })]
  try {
    await materialize(upstream, { store, config: { catalog: { rows: ROWS } } })
    const local = reindex({ dataDir, shards: SHARDS, runner: localProcessRunner() })
    const remote = reindex({
      dataDir,
      shards: SHARDS,
      transfer: 's3://refresh-bench/refresh/',
      runner: ecsRunner({
        cluster: CLUSTER,
        taskDefinition: FAMILY,
        client: harness.client,
        launchType: 'FARGATE',
        statusUrl: 's3://refresh-bench/refresh/',
        pollIntervalMs: POLL_MS,
      }),
    })
    // the same tasks with a shared directory instead of S3 (EFS, say): the runner's own cost
    const shared = reindex({
      dataDir,
      shards: SHARDS,
      runner: ecsRunner({
        cluster: CLUSTER,
        taskDefinition: FAMILY,
        client: harness.client,
        launchType: 'FARGATE',
        statusDir: join(dir, 'status'),
        pollIntervalMs: POLL_MS,
      }),
    })
    const time = async (step: AssetDefinition) => {
      const events: RunEvent[] = []
      const result = await materialize([...upstream, step], {
        store,
        selection: 'reindex',
        onEvent: (e) => events.push(e),
      })
      if (result.status !== 'success') throw new Error(`the reindex bench run ended ${result.status}`)
      const at = (pattern: RegExp) => events.find((e) => e.type === 'log' && pattern.test(e.message))?.ts
      const started = events.find((e) => e.type === 'step:start')!.ts
      const ended = events.find((e) => e.type === 'step:success')!.ts
      const building = at(/^building idx-/)
      const downloaded = at(/^downloaded \d+ shards/)
      const logged = events.find((e) => e.type === 'log' && /^uploaded \d+ range inputs/.test(e.message))
      const inputBytes = Number(
        /\((\d+) bytes\)/.exec(logged?.type === 'log' ? logged.message : '')?.[1] ?? 0,
      )
      const shardBytes = result.materializations.reindex!.metadata.bytes as number
      return {
        // through S3: the ranges up and down once each, the shards up and down once each
        movedBytes: 2 * inputBytes + 2 * shardBytes,
        ms: ended - started,
        // the range inputs go up while the first ranges' tasks already run
        uploadMs: Number(/ in (\d+) ms$/.exec(logged?.type === 'log' ? logged.message : '')?.[1] ?? 0),
        tasksMs: (downloaded ?? ended) - (building ?? started),
        documents: result.materializations.reindex!.metadata.documents as number,
      }
    }
    // warm both paths (the SDK loads, the first worker processes start)
    await time(local)
    await time(shared)
    await time(remote)
    const locals: number[] = []
    const shareds: number[] = []
    const remotes: Array<Awaited<ReturnType<typeof time>>> = []
    for (let i = 0; i < REPEAT; i++) {
      locals.push((await time(local)).ms)
      shareds.push((await time(shared)).ms)
      remotes.push(await time(remote))
    }
    // a task's start-up on the harness: a worker process that starts, loads the S3 client, asks
    // for an input that is not there, and exits (what a task costs before it does any work)
    const startup: number[] = []
    // spawned asynchronously: the S3 server answering it runs in this process
    const { execFile } = await import('node:child_process')
    const worker = (input: string) =>
      new Promise<void>((resolve) => {
        execFile(
          process.execPath,
          [join(root, 'dist', 'cli', 'main.js'), 'worker', 'index-shard', input],
          () => resolve(),
        )
      })
    const missing = JSON.stringify({
      source: 's3://refresh-bench/none.db',
      table: 'media',
      lo: 0,
      hi: 1,
      output: join(dir, 'none.db'),
      shard: 0,
    })
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      await worker(missing)
      startup.push(performance.now() - t0)
    }
    const localMs = median(locals)
    const sharedMs = median(shareds)
    const remoteMs = median(remotes.map((r) => r.ms))
    const uploadMs = median(remotes.map((r) => r.uploadMs))
    const tasksMs = median(remotes.map((r) => r.tasksMs))
    const startupMs = median(startup)
    const allowance = startupMs + POLL_MS
    const f = (n: number) => Math.round(n).toLocaleString('en-US')
    const sign = (n: number) => `${n >= 0 ? '+' : '-'}${f(Math.abs(n))}`
    return {
      title: 'Reindex on ECS through S3 vs the local process pool',
      body: `${ROWS.toLocaleString('en-US')} catalog rows (${remotes[0]!.documents.toLocaleString('en-US')} documents after clean), ${SHARDS} shards, medians of ${REPEAT} after a warm-up.
ECS: the harness in process mode (one real \`refresh worker\` process per task, as a task's container
would run it), polled every ${POLL_MS} ms; its input and output either on a shared directory (as with
EFS) or through a real local S3 server (s3rver, running on this machine, in the orchestrator's process).

| | reindex step | vs local |
|---|---:|---:|
| local process pool | ${f(localMs)} ms | - |
| ECS tasks, shared directory | ${f(sharedMs)} ms | ${sign(sharedMs - localMs)} ms |
| ECS tasks through S3 | ${f(remoteMs)} ms | ${sign(remoteMs - localMs)} ms |
| of which: range inputs written and uploaded (the first tasks start as their range is up) | ${f(uploadMs)} ms | |
| of which: from the first range's upload to the last shard back home | ${f(tasksMs)} ms | |
| a task's start-up here (a worker process that loads the S3 client, makes one call and exits) + one poll interval | ${f(startupMs)} + ${POLL_MS} = ${f(allowance)} ms | |

Target: no slower than the local backend plus the task start-up. With a shared directory: ${sharedMs - localMs <= allowance ? 'met' : 'not met'} (${sign(sharedMs - localMs)} ms against ${f(allowance)} ms): the runner itself (RunTask,
batched DescribeTasks, status reads) costs about a task start-up and a poll. Through S3: not met on
this machine (${sign(remoteMs - localMs)} ms): the cleaned rows go up once (each worker then downloads only its range)
and the shards come back, ${f(median(remotes.map((r) => r.movedBytes)) / 2 ** 20)} MiB moved in all here, through an S3 server that shares these 2
cores with the orchestrator and the 4 workers. On AWS the transfers run on the workers' own hosts
and network, and a Fargate task's start-up (20 to 60 s) dominates both figures.`,
    }
  } finally {
    harness.restore()
    await s3.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
