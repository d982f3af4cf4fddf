/**
 * A Postgres refresh's reindex on ECS workers (the ECS harness: real worker processes, the ECS
 * API mocked): each task reads its id range from the API database with the URL from its task
 * definition's environment, never from the RunTask request, and hands its shard back through S3
 * (a real local S3 server).
 */
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clean } from '../../assets/clean.js'
import { copy } from '../../assets/copy.js'
import { reindex } from '../../assets/reindex.js'
import { materialize } from '../../core/materialize.js'
import { ecsRunner } from '../../runners/ecs.js'
import { tempDir } from '../helpers.js'
import { startPostgres, type TestPostgres } from '../postgres.js'
import { type LocalS3, startLocalS3 } from '../s3-server.js'
import { alive, CLUSTER, EcsHarness, FAMILY } from './ecs-harness.js'

let server: TestPostgres
let s3: LocalS3
let harness: EcsHarness | undefined

beforeAll(async () => {
  ;[server, s3] = await Promise.all([startPostgres(), startLocalS3(['refresh-test'])])
}, 60_000)

afterAll(async () => {
  harness?.restore()
  await Promise.all([server?.stop(), s3?.close()])
})

describe('reindex({ postgres }) on ECS workers', () => {
  it('each task reads its range from the API database; the URL is in no request', async () => {
    const upstream = await server.freshDatabase('up')
    const api = await server.freshDatabase('api')
    await server.sql(
      `CREATE TABLE articles (id integer PRIMARY KEY, headline text, body text, words integer);
       INSERT INTO articles SELECT i, 'Headline ' || i, 'river ' || (i % 7) || ' story', i % 900 FROM generate_series(1, 3000) i`,
      undefined,
      upstream,
    )
    const dir = tempDir()
    // the task definition's environment: what ECS gives the container (a secret, in production)
    harness = new EcsHarness({
      stateDir: join(dir, 'ecs'),
      taskEnvironment: { REFRESH_ARTICLES_DB: api, ...s3.env } as Record<string, string>,
    })
    const runner = ecsRunner({
      cluster: CLUSTER,
      taskDefinition: FAMILY,
      statusUrl: 's3://refresh-test/ecs/',
      client: harness.client,
      launchType: 'FARGATE',
      pollIntervalMs: 50,
      backoffMs: 5,
    })
    process.env.REFRESH_ARTICLES_DB = api
    try {
      const result = await materialize(
        [
          copy({ table: 'articles', postgres: { from: upstream, to: api } }),
          clean({ postgres: { url: api } }),
          reindex({
            dataDir: join(dir, 'data'),
            shards: 4,
            runner,
            postgres: { env: 'REFRESH_ARTICLES_DB' },
            transfer: { bucket: 'refresh-test', prefix: 'ecs/' },
          }),
        ],
        { store: join(dir, 'refresh.db'), config: { reindex: { shardRetryDelayMs: 0 } } },
      )
      expect(result.status, JSON.stringify(result.steps)).toBe('success')
      expect(result.materializations.reindex!.metadata).toMatchObject({
        documents: 3000,
        shards: 4,
        runner: 'ecs',
      })
      expect(harness.runTaskInputs).toHaveLength(4)
      const password = new URL(api).password
      for (const input of harness.runTaskInputs) {
        const request = JSON.stringify(input)
        expect(request).not.toContain(password)
        const unit = JSON.parse(input.overrides!.containerOverrides![0]!.command![1]!) as Record<
          string,
          unknown
        >
        expect(unit).toMatchObject({
          database: { env: 'REFRESH_ARTICLES_DB' },
          table: expect.stringMatching(/^articles_new_/),
        })
      }
      for (const pid of harness.pids()) expect(alive(pid)).toBe(false)
    } finally {
      delete process.env.REFRESH_ARTICLES_DB
      await runner.close()
    }
  }, 120_000)
})
