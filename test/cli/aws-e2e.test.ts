/**
 * End to end on the AWS environment of the default refresh.config.ts, unchanged: the real CLI
 * (`refresh doctor|run|query|promote|gc --env aws`) against a real local S3 server, with the
 * ECS and EC2 APIs answered by stand-ins preloaded into each CLI process (test/aws-stand-ins.ts):
 * ECS tasks are real worker processes, an EBS snapshot is a copy of the volume's directory, and
 * each replica is a real `refresh serve` process on its own loopback address.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exportCatalog, generateCatalog } from '../../assets/catalog.js'
import type { Alias } from '../../assets/state.js'
import { S3Store } from '../../aws/s3.js'
import type { InstanceSummary } from '../aws-stand-ins.js'
import { CLI, ROOT, run } from '../helpers.js'
import { CLUSTER, FAMILY } from '../runners/ecs-harness.js'
import { type LocalS3, startLocalS3 } from '../s3-server.js'

const BUCKET = 'refresh-e2e'
const ROWS = 3000
let s3: LocalS3
let cwd: string
let env: NodeJS.ProcessEnv
let stateDir: string

beforeAll(async () => {
  s3 = await startLocalS3([BUCKET])
  cwd = mkdtempSync(join(tmpdir(), 'refresh-aws-e2e-'))
  copyFileSync(join(ROOT, 'refresh.config.ts'), join(cwd, 'refresh.config.ts'))
  // the upstream export the aws environment's copy reads
  const catalogFile = join(cwd, 'upstream.db')
  await generateCatalog(catalogFile, ROWS, 11, () => undefined)
  await exportCatalog(catalogFile, `s3://${BUCKET}/refresh/export/`, { objects: 3, gzip: true })
  const volume = join(cwd, 'volume') // the EBS volume, mounted at REFRESH_DATA_DIR
  mkdirSync(volume)
  stateDir = join(cwd, 'aws')
  env = {
    ...s3.env,
    REFRESH_S3_BUCKET: BUCKET,
    REFRESH_ECS_CLUSTER: CLUSTER,
    REFRESH_ECS_TASK_DEFINITION: FAMILY,
    REFRESH_SUBNETS: 'subnet-e2e',
    REFRESH_SECURITY_GROUPS: 'sg-e2e',
    REFRESH_EBS_VOLUME_ID: 'vol-e2e',
    REFRESH_DATA_DIR: volume,
    REFRESH_REPLICA_LAUNCH_TEMPLATE: 'refresh-replica',
    REFRESH_REPLICAS: '2',
    REFRESH_SHARDS: '4',
    REFRESH_REPLICA_PORT: String(20_000 + Math.floor(Math.random() * 20_000)),
    REFRESH_AWS_POLL_MS: '300',
    NODE_OPTIONS: `--import ${pathToFileURL(join(ROOT, 'test', 'fixtures', 'aws-preload.mjs')).href}`,
    REFRESH_TEST_AWS_STAND_INS: JSON.stringify({ stateDir, volumes: { 'vol-e2e': volume }, firstIp: 30 }),
  }
})

afterAll(async () => {
  // the replicas outlive the CLI process that launched them: stop them
  for (const i of instances()) {
    if (i.pid !== null) {
      try {
        process.kill(i.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  await s3?.close()
  rmSync(cwd, { recursive: true, force: true })
})

/** The instances every CLI process launched (each writes its own file when it exits). */
function instances(): InstanceSummary[] {
  if (!existsSync(stateDir)) return []
  return readdirSync(stateDir)
    .filter((f) => /^ec2-instances\.\d+\.json$/.test(f))
    .flatMap((f) => JSON.parse(readFileSync(join(stateDir, f), 'utf8')) as InstanceSummary[])
}

describe('refresh on the aws environment of the default config', () => {
  it('doctor passes, the whole chain runs, a replica answers queries, promote and gc see the result, a rollback goes back', async () => {
    const doctor = await run([CLI, 'doctor', '--env', 'aws'], { cwd, env, timeoutMs: 60_000 })
    expect(doctor.stderr).toBe('')
    expect(doctor.code).toBe(0)
    expect(doctor.stdout).toMatch(/ok {4}s3 bucket +s3:\/\/refresh-e2e\/refresh\/ reachable/)
    expect(doctor.stdout).toMatch(/ok {4}permission ec2:RunInstances +allowed \(DryRun\)/)

    // a wrong bucket fails its check (exit 1) with the fix; a missing variable is bad input (exit 2)
    const wrong = await run([CLI, 'doctor', '--env', 'aws'], {
      cwd,
      env: { ...env, REFRESH_S3_BUCKET: 'no-such-bucket' },
      timeoutMs: 60_000,
    })
    expect(wrong.code).toBe(1)
    expect(wrong.stdout).toMatch(
      /FAIL {2}s3 bucket +the S3 bucket no-such-bucket does not exist[\s\S]*fix: create the bucket/,
    )
    const unset = await run([CLI, 'doctor', '--env', 'aws'], {
      cwd,
      env: { ...env, REFRESH_EBS_VOLUME_ID: '' },
      timeoutMs: 60_000,
    })
    expect(unset.code).toBe(2)
    expect(unset.stderr).toMatch(/REFRESH_EBS_VOLUME_ID \(the EBS volume mounted at REFRESH_DATA_DIR\)/)

    const refresh = await run([CLI, 'run', '--env', 'aws', '--plain'], { cwd, env, timeoutMs: 180_000 })
    if (refresh.code !== 0) console.error(refresh.stdout, refresh.stderr)
    expect(refresh.code).toBe(0)
    expect(refresh.stderr).not.toMatch(/NodeVersionSupportWarning/)
    // every step ran on its AWS backend
    expect(refresh.stdout).toMatch(/loaded s3:\/\/refresh-e2e\/refresh\/export\/part-00000\.ndjson\.gz/)
    expect(refresh.stdout).toMatch(/building idx-\S+: \d+ documents in 4 shards on ecs/)
    expect(refresh.stdout).toMatch(/downloaded 4 shards/)
    const runId = /run (\S+) succeeded/.exec(refresh.stdout)?.[1] ?? /\b(\w{10,})\b/.exec(refresh.stdout)?.[1]
    expect(runId).toBeTruthy()

    // the alias is an S3 object pointing at the EBS snapshot
    const store = new S3Store()
    const alias = await store.getJson<Alias>(BUCKET, 'refresh/current.json')
    expect(alias?.current.snapshot).toMatch(/^snap-/)
    expect(alias?.current.index).toMatch(/^idx-/)
    // the run's S3 scratch (input, shards, statuses) is gone
    expect((await store.list(BUCKET, 'refresh/runs/')).map((o) => o.key)).toEqual([])
    await store.close()

    // two replicas serve the snapshot; refresh query goes through one
    const serving = instances().filter((i) => i.state === 'running')
    expect(serving).toHaveLength(2)
    const replica = `http://${serving[0]!.ip}:${env.REFRESH_REPLICA_PORT}`
    const query = await run([CLI, 'query', 'fox', '--limit', '3', '--replica', replica], { cwd })
    expect(query.code).toBe(0)
    // the replica serves the index from the EBS snapshot's volume (its manifest was written
    // before the snapshot, so it names the index)
    expect(query.stdout).toMatch(
      new RegExp(`^index ${alias!.current.index} .*via replica http://127\\.0\\.0\\.3\\d:`),
    )
    expect(query.stdout).toMatch(/3 hits for "fox"/)

    const promote = await run([CLI, 'promote', '--env', 'aws'], { cwd, env, timeoutMs: 60_000 })
    expect(promote.code).toBe(0)
    expect(promote.stdout).toContain(`current:  ${alias!.current.index} (snapshot ${alias!.current.snapshot}`)

    const status = await run([CLI, 'status', '--env', 'aws'], { cwd, env, timeoutMs: 60_000 })
    expect(status.code).toBe(0)
    expect(status.stdout).toContain(alias!.current.index)

    // nothing is left behind: the tasks stopped, the replicas are the run's result
    const gc = await run([CLI, 'gc', '--env', 'aws'], { cwd, env, timeoutMs: 60_000 })
    expect(gc.stderr).toBe('')
    expect(gc.code).toBe(0)
    expect(gc.stdout).not.toMatch(/\bremove\b/)

    // a second refresh, then a rollback: the fleet goes back onto the first snapshot, then the alias
    const again = await run([CLI, 'run', '--env', 'aws', '--plain'], { cwd, env, timeoutMs: 180_000 })
    expect(again.code).toBe(0)
    const store2 = new S3Store()
    const second = await store2.getJson<Alias>(BUCKET, 'refresh/current.json')
    expect(second?.current.snapshot).not.toBe(alias!.current.snapshot)
    expect(second?.previous[0]?.snapshot).toBe(alias!.current.snapshot)
    const rollback = await run([CLI, 'promote', '--env', 'aws', '--rollback'], {
      cwd,
      env,
      timeoutMs: 120_000,
    })
    expect(rollback.stderr).not.toMatch(/error/i)
    expect(rollback.code).toBe(0)
    expect(rollback.stdout).toContain(
      `rolled back: current -> ${alias!.current.index} (snapshot ${alias!.current.snapshot})`,
    )
    const back = await store2.getJson<Alias>(BUCKET, 'refresh/current.json')
    expect(back?.current.snapshot).toBe(alias!.current.snapshot)
    store2.close()
    const rolledBack = instances().filter((i) =>
      i.tags.some((t) => t.Key === 'refresh:run' && t.Value?.startsWith('rollback-')),
    )
    expect(rolledBack).toHaveLength(2)
    const viaRollback = await run(
      [CLI, 'query', 'fox', '--replica', `http://${rolledBack[0]!.ip}:${env.REFRESH_REPLICA_PORT}`],
      { cwd },
    )
    expect(viaRollback.code).toBe(0)
    expect(viaRollback.stdout).toMatch(new RegExp(`^index ${alias!.current.index} `))
  })
})
