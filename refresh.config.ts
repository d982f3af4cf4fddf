/**
 * The default refresh: the seven building blocks in a chain, on embedded backends (SQLite files,
 * local worker processes, the file system). `npx refresh run` does a whole refresh; then
 * `npx refresh query fox` searches the promoted index, and `npx refresh promote --rollback`
 * goes back to the previous one. Copy this file to compose your own.
 */
import {
  catalog,
  clean,
  copy,
  defineConfig,
  localProcessRunner,
  promote,
  reindex,
  replicas,
  schedule,
  snapshot,
  whenMaterialized,
} from 'refresh'

// every file of the refresh (catalog, working databases, indexes, snapshots, replicas, the
// `current` alias) lives here, beside this config
const dataDir = new URL('./.refresh/data/', import.meta.url)

export default defineConfig({
  assets: [
    catalog({ dataDir }), // generated upstream data; `--set catalog.rows=1000000` for more
    copy({ dataDir, retry: { maxAttempts: 3, delayMs: 500, backoff: 'exponential' } }),
    clean({ dataDir }), // rules are config with defaults: licenses, minTagAccuracy, deniedTags...
    // one worker process per id range; a failed shard is retried alone (reindex.shardAttempts),
    // so the step itself is not retried: that would rebuild every shard
    reindex({ dataDir, shards: 4, runner: localProcessRunner(), retry: { maxAttempts: 1 } }),
    snapshot({ dataDir, retry: { maxAttempts: 2, delayMs: 1000 } }), // verified by sha256; keeps the last 3
    replicas({ dataDir }), // rolled one at a time, each checked by real queries; rolled back on failure
    promote({ dataDir, retry: { maxAttempts: 1 } }), // never retried blindly: a failed promote needs a look
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
  schedules: [
    // the whole refresh every night; off until `npx refresh schedules on nightly`
    schedule({ name: 'nightly', cron: '0 3 * * *', timezone: 'UTC', selection: '*', defaultStatus: 'off' }),
  ],
})
