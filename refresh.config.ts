/**
 * The default refresh: the seven building blocks in a chain, on embedded backends (SQLite files,
 * local worker processes, the file system). `npx refresh run` does a whole refresh; then
 * `npx refresh query fox` searches the promoted index, and `npx refresh promote --rollback`
 * goes back to the previous one. Copy this file to compose your own.
 */
import {
  awsSettings,
  catalog,
  clean,
  copy,
  defineConfig,
  ebsSnapshots,
  ec2Replicas,
  ec2Runner,
  ecsRunner,
  indexCountWithin,
  indexNotEmpty,
  localProcessRunner,
  postgresSettings,
  promote,
  promoteTable,
  reindex,
  replicas,
  s3AliasStore,
  schedule,
  snapshot,
  snapshotVerifies,
  whenMaterialized,
} from 'refresh'

// every file of the refresh (catalog, working databases, indexes, snapshots, replicas, the
// `current` alias) lives in .refresh/data beside this config, whatever the working directory
// (`dataDir` on each block to put it elsewhere)
export default defineConfig({
  assets: [
    catalog(), // generated upstream data; `--set catalog.rows=1000000` for more
    // the upstream table and its columns are introspected; `table`, `columns`, `idColumn` to choose
    copy({ table: 'media', retry: { maxAttempts: 3, delayMs: 500, backoff: 'exponential' } }),
    // the media rules (`mediaRules`), set by its run config: licenses, minTagAccuracy, deniedTags...;
    // `clean({ rules: [...] })` for another table (trim, url, lowercase, dropNull, dedupe, filterList...)
    clean(),
    // one worker process per id range; a failed shard is retried alone (reindex.shardAttempts),
    // so the step itself is not retried: that would rebuild every shard
    reindex({
      shards: 4,
      runner: localProcessRunner(),
      retry: { maxAttempts: 1 },
      searchable: ['title', 'creator', { column: 'tags', list: 'name' }], // tag names are words
      stored: ['url', 'license', 'provider', 'identifier'], // returned with hits, not searched
    }),
    snapshot({ retry: { maxAttempts: 2, delayMs: 1000 } }), // verified by sha256; keeps the last 3
    replicas(), // rolled one at a time, each checked by real queries; rolled back on failure
    promote({ retry: { maxAttempts: 1 } }), // never retried blindly: a failed promote needs a look
  ],
  // evaluated right after their asset materializes; a failed one skips what is downstream
  // (snapshot, replicas, promote), so the promoted index stays as it was. `refresh checks` lists
  // the latest results; `--set checks.reindex.count_within.maxDropPercent=50` accepts a big drop
  checks: [
    indexNotEmpty(), // reindex: at least one document
    indexCountWithin({ maxDropPercent: 10 }), // reindex: at most 10% fewer documents than promoted
    snapshotVerifies(), // snapshot: every file matches its manifest's sha256
  ],
  config: {
    replicas: { replicas: 2 },
  },
  // one run at a time may write the index, whoever starts it (`refresh run`, the daemon,
  // materialize()): a second one waits (`--no-wait` fails instead), so two refreshes never
  // overwrite each other's index
  guards: [{ name: 'index_writers', selection: 'reindex,promote', concurrency: 1 }],
  // run by `npx refresh daemon`
  sensors: [
    // a reindex materialized by a run that did not snapshot it (a partial run, a retry) gets
    // snapshotted, rolled out and promoted; one snapshot at a time, and a request that arrives
    // meanwhile becomes one follow-up run, so fresh data is never left unsnapshotted
    whenMaterialized('reindex', {
      name: 'snapshot_after_reindex',
      launch: 'snapshot+',
      guard: { concurrency: 1, onConflict: 'coalesce' },
    }),
  ],
  // `--env aws`: the same chain on AWS, its names from environment variables (see "AWS
  // environment" in the README; `refresh doctor --env aws` checks them). Built only when chosen,
  // so a local run neither needs the variables nor loads the AWS SDK.
  environments: {
    // `--env postgres`: the refresh on the user's own databases, as Openverse does it. The
    // upstream table ($REFRESH_UPSTREAM_TABLE, default media) is streamed from $REFRESH_UPSTREAM_URL
    // into a new table of the API database ($REFRESH_API_URL), cleaned there in SQL, indexed by
    // workers that each read their id range from it, and swapped in under the same name once the
    // index is promoted (`refresh promote --rollback` undoes both). Columns are introspected: a
    // media table keeps the media rules and index; another table gets its text columns trimmed
    // and searched (write your own config to choose `rules`, `searchable`, `stored`).
    postgres: () => {
      const pg = postgresSettings()
      return {
        assets: [
          copy({ table: pg.table, postgres: { from: pg.upstreamUrl, to: pg.apiUrl } }), // resumable
          clean({ postgres: { url: pg.apiUrl } }),
          reindex({ shards: 4, runner: localProcessRunner(), postgres: true, retry: { maxAttempts: 1 } }),
          snapshot({ retry: { maxAttempts: 2, delayMs: 1000 } }),
          replicas(),
          promote({ retry: { maxAttempts: 1 } }),
          // after the index: the table swapped in under the live name, the previous kept for rollback
          promoteTable({ table: pg.table, url: pg.apiUrl, upstream: 'clean', after: ['promote'] }),
        ],
      }
    },
    aws: () => {
      const aws = awsSettings()
      const s3 = `s3://${aws.bucket}/${aws.prefix}`
      const dataDir = aws.dataDir // the mount point of the EBS volume that holds the indexes
      const alias = s3AliasStore(s3) // `current` is the object <prefix>current.json
      const template = (t: string) => (t.startsWith('lt-') ? { id: t } : { name: t })
      const runner =
        aws.workers === 'ec2'
          ? ec2Runner({
              launchTemplate: template(aws.workerLaunchTemplate!), // pinned to one version per step
              subnetId: aws.subnets[0],
              securityGroupIds: aws.securityGroups,
              statusUrl: s3,
              pollIntervalMs: aws.pollMs,
            })
          : ecsRunner({
              cluster: aws.cluster!,
              taskDefinition: aws.taskDefinition!, // pinned to one revision per step
              launchType: aws.launchType,
              networkConfiguration: {
                awsvpcConfiguration: {
                  subnets: aws.subnets,
                  securityGroups: aws.securityGroups,
                  assignPublicIp: 'DISABLED',
                },
              },
              statusUrl: s3,
              pollIntervalMs: aws.pollMs,
            })
      return {
        resources: { aws },
        // the EBS snapshot is verified (encrypted, complete) by its backend: no local files to hash
        checks: [indexNotEmpty(), indexCountWithin({ dataDir, alias })],
        assets: [
          copy({ dataDir, source: aws.exportUrl }), // NDJSON(.gz) objects; a retry resumes
          clean({ dataDir }),
          // the cleaned table goes up to S3, each worker builds its range, the shards come back
          reindex({ dataDir, shards: aws.shards, runner, transfer: s3, retry: { maxAttempts: 1 } }),
          // an encrypted EBS snapshot of the index volume, tagged; the last 3 kept (never one in use)
          snapshot({
            dataDir,
            backend: ebsSnapshots({
              volumeId: aws.volumeId,
              mountPath: dataDir,
              pollIntervalMs: aws.pollMs,
              // never deleted while the alias can still roll back to them
              protect: async () => {
                const a = await alias.read()
                return a ? [a.current, ...a.previous].map((e) => e.snapshot) : []
              },
            }),
          }),
          // replacements launched from the snapshot, each checked by /healthz and a real query
          replicas({
            dataDir,
            fleet: ec2Replicas({
              fleet: aws.fleet,
              launchTemplate: aws.replicaLaunchTemplate,
              count: aws.replicas,
              port: aws.replicaPort,
              pollIntervalMs: aws.pollMs,
              // registered and healthy before the old replicas are drained and terminated
              targetGroupArn: aws.targetGroupArn,
            }),
          }),
          promote({ dataDir, alias, retry: { maxAttempts: 1 } }),
        ],
      }
    },
  },
  schedules: [
    // the whole refresh every night; off until `npx refresh schedules on nightly`
    schedule({ name: 'nightly', cron: '0 3 * * *', timezone: 'UTC', selection: '*', defaultStatus: 'off' }),
  ],
})
