import type Database from 'better-sqlite3'
import { StoreError } from '../../errors.js'

/**
 * The SQLite store's schema, as forward-only migrations. `PRAGMA user_version` holds the version applied;
 * `PRAGMA application_id` marks the file as a refresh store so that any other SQLite file is
 * refused untouched. A migration is never edited once released: add the next one instead.
 */
export const APPLICATION_ID = 0x52465348 // "RFSH"

export const MIGRATIONS: readonly string[] = [
  // 1: runs, steps, attempts, events, materializations; and the tables later parts of refresh
  // fill (sensors and schedules, ticks, run keys, leases, pool slots, parked requests, settings).
  `
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('queued','started','paused','success','failure','canceled')),
    selection TEXT NOT NULL,
    plan TEXT NOT NULL,
    reused TEXT NOT NULL DEFAULT '{}',
    config TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '{}',
    origin TEXT NOT NULL DEFAULT 'manual',
    run_key TEXT,
    parent_run_id TEXT REFERENCES runs(id),
    root_run_id TEXT,
    partition_key TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    owner_pid INTEGER,
    owner_host TEXT,
    heartbeat_at INTEGER,
    cancel_requested_at INTEGER,
    error TEXT
  );
  CREATE INDEX runs_status_created ON runs (status, created_at);
  CREATE INDEX runs_created ON runs (created_at);
  CREATE INDEX runs_parent ON runs (parent_run_id);

  CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    plan_index INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending','running','retrying','succeeded','failed','skipped','canceled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER,
    ended_at INTEGER,
    error TEXT,
    reason TEXT,
    partition_key TEXT,
    PRIMARY KEY (run_id, key)
  ) WITHOUT ROWID;

  CREATE TABLE attempts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed','canceled')),
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    error TEXT,
    PRIMARY KEY (run_id, step_key, attempt)
  ) WITHOUT ROWID;

  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    ts INTEGER NOT NULL,
    type TEXT NOT NULL,
    step_key TEXT,
    payload TEXT NOT NULL
  );
  CREATE INDEX events_run ON events (run_id, id);

  CREATE TABLE materializations (
    id INTEGER PRIMARY KEY,
    asset_key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    partition_key TEXT
  );
  CREATE INDEX materializations_asset ON materializations (asset_key, id);
  CREATE INDEX materializations_run ON materializations (run_id);

  CREATE TABLE instigators (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('sensor','schedule')),
    status TEXT NOT NULL DEFAULT 'default',
    cursor TEXT,
    enabled_at INTEGER,
    updated_at INTEGER NOT NULL
  );

  CREATE TABLE ticks (
    id INTEGER PRIMARY KEY,
    instigator TEXT NOT NULL,
    kind TEXT NOT NULL,
    tick_time INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    status TEXT NOT NULL,
    run_ids TEXT NOT NULL DEFAULT '[]',
    skip_reason TEXT,
    error TEXT,
    cursor TEXT
  );
  CREATE INDEX ticks_instigator ON ticks (instigator, id);

  CREATE TABLE run_keys (
    origin TEXT NOT NULL,
    run_key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (origin, run_key)
  ) WITHOUT ROWID;

  CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );

  CREATE TABLE pool_slots (
    pool TEXT NOT NULL,
    run_id TEXT NOT NULL,
    step_key TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    PRIMARY KEY (pool, run_id, step_key)
  ) WITHOUT ROWID;

  CREATE TABLE parked_requests (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    selection TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '{}',
    run_key TEXT,
    created_at INTEGER NOT NULL,
    replayed_at INTEGER,
    replay_run_id TEXT
  );

  CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  );
  `,
  // 2: run guards (a concurrency rule shared by the runs that carry the same guard key), the
  // instigators' evaluation times, repeated identical skipped ticks folded into one row, pause
  // requests, and what a parked request needs to be replayed on its own.
  `
  ALTER TABLE runs ADD COLUMN guard TEXT;
  ALTER TABLE runs ADD COLUMN guard_limit INTEGER;
  CREATE INDEX runs_guard ON runs (guard, status);
  ALTER TABLE instigators ADD COLUMN last_tick_at INTEGER;
  ALTER TABLE instigators ADD COLUMN last_tick_id INTEGER;
  ALTER TABLE ticks ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1;
  ALTER TABLE runs ADD COLUMN pause_requested_at INTEGER;
  ALTER TABLE parked_requests ADD COLUMN guard TEXT;
  ALTER TABLE parked_requests ADD COLUMN parent_run_id TEXT;
  ALTER TABLE parked_requests ADD COLUMN replay_outcome TEXT;
  CREATE INDEX parked_pending ON parked_requests (replayed_at, id);
  `,
  // 3: run holds: the config's run guards (at most N runs at a time touching a selection),
  // enforced for every entry point; a run may hold several.
  `
  CREATE TABLE run_holds (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    hold TEXT NOT NULL,
    hold_limit INTEGER NOT NULL,
    PRIMARY KEY (run_id, hold)
  ) WITHOUT ROWID;
  CREATE INDEX run_holds_hold ON run_holds (hold, run_id);
  `,
  // 4: runs by end time within a status, for run-status sensors and alerts polled every second.
  `
  CREATE INDEX runs_status_ended ON runs (status, ended_at);
  `,
  // 5: several daemons: which daemon claimed a queued run to launch it, and each sensor's and
  // schedule's last tick claim (one daemon evaluates each tick).
  `
  ALTER TABLE runs ADD COLUMN launched_by TEXT;
  ALTER TABLE runs ADD COLUMN launch_claimed_at INTEGER;
  CREATE TABLE tick_claims (
    name TEXT PRIMARY KEY,
    slot INTEGER NOT NULL,
    holder TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    done_at INTEGER
  );
  `,
  // 6: retention: whether a materialization is the latest of its asset and partition (one index
  // seek per materialization of a run about to be pruned), and ticks by end time.
  `
  CREATE INDEX materializations_latest ON materializations (asset_key, partition_key, id);
  CREATE INDEX ticks_ended ON ticks (ended_at);
  `,
  // 7: asset check results, one row per evaluation, with its run and partition; the latest per
  // (asset, check, partition) is one index range each.
  `
  CREATE TABLE check_results (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    asset_key TEXT NOT NULL,
    check_name TEXT NOT NULL,
    partition_key TEXT,
    passed INTEGER NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('warn','error')),
    blocking INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    error TEXT
  );
  CREATE INDEX check_results_latest ON check_results (asset_key, check_name, partition_key, id);
  CREATE INDEX check_results_run ON check_results (run_id, id);
  `,
  // 8: partitions: the keys of dynamic partitions definitions (in the order added) and their
  // removals (a status folded before a removal is rebuilt), each asset's folded partition status
  // with its cursor, and the partition events it is folded from, per asset in id order.
  `
  CREATE TABLE dynamic_partitions (
    seq INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    UNIQUE (name, partition_key)
  );
  CREATE TABLE dynamic_partition_removals (
    removed_seq INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    removed_at INTEGER NOT NULL
  );
  CREATE INDEX dynamic_partition_removals_name ON dynamic_partition_removals (name, removed_seq);
  CREATE TABLE partition_status (
    asset_key TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX events_partition ON events (step_key, id) WHERE type IN ('asset:materialized', 'step:failure');
  `,
  // 9: a parked request keeps the partition it asked for (a partitioned schedule's tick, a sensor's
  // partitioned request, `refresh run --partition` during maintenance), replayed with it.
  `
  ALTER TABLE parked_requests ADD COLUMN partition_key TEXT;
  `,
  // 10: backfills: what each asks for (spec) and where it is (state: partition subsets and the
  // cursor of the run ends folded), saved compare-and-set on version; runs carry their backfill's
  // id in their tags (refresh/backfill).
  `
  CREATE TABLE backfills (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('requested','canceling','canceled','failed','completed')),
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    ended_at INTEGER
  );
  CREATE INDEX backfills_status ON backfills (status, created_at);
  `,
  // 11: automation: one row per automated asset (its on/off switch and the evaluator's state for
  // it) and the global row '*' (the global switch, and the evaluator's cursor as JSON with its
  // tick number, committed compare-and-set); the latest evaluations of each asset, in id order.
  `
  CREATE TABLE automation (
    asset TEXT PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'default' CHECK (status IN ('on','off','default')),
    state TEXT,
    tick INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE automation_evaluations (
    id INTEGER PRIMARY KEY,
    tick INTEGER NOT NULL,
    asset TEXT NOT NULL,
    evaluated_at INTEGER NOT NULL,
    true_count INTEGER NOT NULL,
    total INTEGER NOT NULL,
    tree TEXT NOT NULL,
    run_ids TEXT NOT NULL DEFAULT '[]'
  );
  CREATE INDEX automation_evaluations_asset ON automation_evaluations (asset, id);
  `,
]

export const SCHEMA_VERSION = MIGRATIONS.length

/**
 * Reads the file's identity before writing anything, then migrates it forward: a file that is not
 * SQLite, an SQLite file of another application, or a refresh store of a newer schema is refused
 * untouched. Two processes migrating at once are safe: the migration is one IMMEDIATE transaction
 * that reads the version again once it holds the lock.
 */
export function checkAndMigrate(db: Database.Database, file: string, readonly: boolean): void {
  let appId: number
  let version: number
  let objects: number
  try {
    appId = db.pragma('application_id', { simple: true }) as number
    version = db.pragma('user_version', { simple: true }) as number
    objects = (db.prepare('SELECT count(*) AS n FROM sqlite_master').get() as { n: number }).n
  } catch (cause) {
    throw new StoreError(
      `${file} is not a refresh store (${(cause as Error).message}); point --store at a refresh store or at a new file.`,
      { cause },
    )
  }
  if (appId !== APPLICATION_ID && !(appId === 0 && objects === 0)) {
    throw new StoreError(
      `${file} is an SQLite database but not a refresh store; it was left untouched. Point --store at a refresh store or at a new file.`,
    )
  }
  if (version > SCHEMA_VERSION) {
    throw new StoreError(
      `${file} was written by a newer version of refresh (schema ${version}; this version knows up to ${SCHEMA_VERSION}); it was left untouched. Upgrade refresh to open it.`,
    )
  }
  if (version === SCHEMA_VERSION) return
  if (readonly) {
    throw new StoreError(
      `${file} has schema ${version} and needs migrating to ${SCHEMA_VERSION}; open it writable once.`,
    )
  }
  db.transaction(() => {
    // another process may have migrated between our read and this IMMEDIATE transaction
    let current = db.pragma('user_version', { simple: true }) as number
    for (; current < SCHEMA_VERSION; current++) db.exec(MIGRATIONS[current]!)
    db.pragma(`application_id = ${APPLICATION_ID}`)
    db.pragma(`user_version = ${SCHEMA_VERSION}`)
  }).immediate()
}
