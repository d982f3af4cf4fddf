import type pg from 'pg'
import { StoreError } from '../../errors.js'

/**
 * The Postgres store's schema, as forward-only migrations: the table `refresh_schema` holds the
 * version applied. A migration is never edited once released: add the next one instead. Times
 * are milliseconds since the epoch (bigint), JSON is kept as text (as written, compact), and
 * `runs.seq` is the order runs were requested in (what SQLite's rowid gives).
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE runs (
    seq bigserial NOT NULL UNIQUE,
    id text PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('queued','started','paused','success','failure','canceled')),
    selection text NOT NULL,
    plan text NOT NULL,
    reused text NOT NULL DEFAULT '{}',
    config text NOT NULL DEFAULT '{}',
    tags text NOT NULL DEFAULT '{}',
    origin text NOT NULL DEFAULT 'manual',
    run_key text,
    parent_run_id text REFERENCES runs(id),
    root_run_id text,
    partition_key text,
    created_at bigint NOT NULL,
    started_at bigint,
    ended_at bigint,
    owner_pid integer,
    owner_host text,
    heartbeat_at bigint,
    cancel_requested_at bigint,
    pause_requested_at bigint,
    error text,
    guard text,
    guard_limit integer,
    launched_by text,
    launch_claimed_at bigint
  );
  CREATE INDEX runs_status_seq ON runs (status, seq);
  CREATE INDEX runs_status_ended ON runs (status, ended_at);
  CREATE INDEX runs_created ON runs (created_at);
  CREATE INDEX runs_parent ON runs (parent_run_id);
  CREATE INDEX runs_guard ON runs (guard, status) WHERE guard IS NOT NULL;
  CREATE INDEX runs_id_pattern ON runs (id text_pattern_ops);

  CREATE TABLE steps (
    run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key text NOT NULL,
    plan_index integer NOT NULL,
    status text NOT NULL CHECK (status IN ('pending','running','retrying','succeeded','failed','skipped','canceled')),
    attempts integer NOT NULL DEFAULT 0,
    started_at bigint,
    ended_at bigint,
    error text,
    reason text,
    partition_key text,
    PRIMARY KEY (run_id, key)
  );

  CREATE TABLE attempts (
    run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step_key text NOT NULL,
    attempt integer NOT NULL,
    status text NOT NULL CHECK (status IN ('running','succeeded','failed','canceled')),
    started_at bigint NOT NULL,
    ended_at bigint,
    error text,
    PRIMARY KEY (run_id, step_key, attempt)
  );

  CREATE TABLE events (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    ts bigint NOT NULL,
    type text NOT NULL,
    step_key text,
    payload text NOT NULL
  );
  CREATE INDEX events_run ON events (run_id, id);
  CREATE INDEX events_run_end ON events (id) WHERE type = 'run:end';

  CREATE TABLE materializations (
    id bigserial PRIMARY KEY,
    asset_key text NOT NULL,
    run_id text NOT NULL,
    attempt integer NOT NULL,
    ts bigint NOT NULL,
    metadata text NOT NULL,
    partition_key text
  );
  CREATE INDEX materializations_asset ON materializations (asset_key, id);
  CREATE INDEX materializations_run ON materializations (run_id);
  CREATE INDEX materializations_latest ON materializations (asset_key, partition_key, id);

  CREATE TABLE instigators (
    name text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('sensor','schedule')),
    status text NOT NULL DEFAULT 'default',
    cursor text,
    enabled_at bigint,
    updated_at bigint NOT NULL,
    last_tick_at bigint,
    last_tick_id bigint
  );

  CREATE TABLE ticks (
    id bigserial PRIMARY KEY,
    instigator text NOT NULL,
    kind text NOT NULL,
    tick_time bigint NOT NULL,
    started_at bigint NOT NULL,
    ended_at bigint,
    status text NOT NULL,
    run_ids text NOT NULL DEFAULT '[]',
    skip_reason text,
    error text,
    cursor text,
    repeats integer NOT NULL DEFAULT 1
  );
  CREATE INDEX ticks_instigator ON ticks (instigator, id);
  CREATE INDEX ticks_ended ON ticks (ended_at);

  CREATE TABLE run_keys (
    origin text NOT NULL,
    run_key text NOT NULL,
    run_id text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (origin, run_key)
  );

  CREATE TABLE run_holds (
    run_id text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    hold text NOT NULL,
    hold_limit integer NOT NULL,
    PRIMARY KEY (run_id, hold)
  );
  CREATE INDEX run_holds_hold ON run_holds (hold, run_id);

  CREATE TABLE leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    acquired_at bigint NOT NULL,
    expires_at bigint NOT NULL
  );

  CREATE TABLE pool_slots (
    pool text NOT NULL,
    run_id text NOT NULL,
    step_key text NOT NULL,
    acquired_at bigint NOT NULL,
    PRIMARY KEY (pool, run_id, step_key)
  );

  CREATE TABLE parked_requests (
    id bigserial PRIMARY KEY,
    origin text NOT NULL,
    selection text NOT NULL,
    config text NOT NULL DEFAULT '{}',
    tags text NOT NULL DEFAULT '{}',
    run_key text,
    guard text,
    parent_run_id text,
    created_at bigint NOT NULL,
    replayed_at bigint,
    replay_run_id text,
    replay_outcome text
  );
  CREATE INDEX parked_pending ON parked_requests (id) WHERE replayed_at IS NULL;
  CREATE UNIQUE INDEX parked_pending_key ON parked_requests (origin, run_key) WHERE replayed_at IS NULL;

  -- the maintenance gate: one row, read FOR SHARE by every transaction that creates a run and
  -- locked FOR UPDATE to turn maintenance on, so no run is created past a gate that is on
  CREATE TABLE maintenance_gate (
    id integer PRIMARY KEY CHECK (id = 1),
    state text
  );
  INSERT INTO maintenance_gate (id, state) VALUES (1, NULL);

  -- each sensor's and schedule's last tick claim: one daemon evaluates each tick
  CREATE TABLE tick_claims (
    name text PRIMARY KEY,
    slot bigint NOT NULL,
    holder text NOT NULL,
    claimed_at bigint NOT NULL,
    done_at bigint
  );

  CREATE TABLE settings (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at bigint NOT NULL
  );
  `,
  // 2: asset check results, one row per evaluation, with its run and partition; the latest per
  // (asset, check, partition) is one index range each. passed and blocking are 0/1 integers, as
  // SQLite keeps them, so that `refresh store copy` moves rows as they are either way.
  `
  CREATE TABLE check_results (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    asset_key text NOT NULL,
    check_name text NOT NULL,
    partition_key text,
    passed smallint NOT NULL,
    severity text NOT NULL CHECK (severity IN ('warn','error')),
    blocking smallint NOT NULL,
    ts bigint NOT NULL,
    metadata text NOT NULL,
    error text
  );
  CREATE INDEX check_results_latest ON check_results (asset_key, check_name, partition_key, id);
  CREATE INDEX check_results_run ON check_results (run_id, id);
  `,
  // 3: partitions: the keys of dynamic partitions definitions (in the order added) and their
  // removals (a status folded before a removal is rebuilt), each asset's folded partition status
  // with its cursor, and the partition events it is folded from, per asset in id order.
  `
  CREATE TABLE dynamic_partitions (
    seq bigserial PRIMARY KEY,
    name text NOT NULL,
    partition_key text NOT NULL,
    added_at bigint NOT NULL,
    UNIQUE (name, partition_key)
  );
  CREATE TABLE dynamic_partition_removals (
    removed_seq bigserial PRIMARY KEY,
    name text NOT NULL,
    partition_key text NOT NULL,
    removed_at bigint NOT NULL
  );
  CREATE INDEX dynamic_partition_removals_name ON dynamic_partition_removals (name, removed_seq);
  CREATE TABLE partition_status (
    asset_key text PRIMARY KEY,
    cursor bigint NOT NULL,
    version text NOT NULL,
    status text NOT NULL,
    updated_at bigint NOT NULL
  );
  CREATE INDEX events_partition ON events (step_key, id) WHERE type IN ('asset:materialized', 'step:failure');
  `,
  // 4: a parked request keeps the partition it asked for, replayed with it.
  `
  ALTER TABLE parked_requests ADD COLUMN partition_key text;
  `,
  // 5: backfills: what each asks for (spec) and where it is (state: partition subsets and the
  // cursor of the run ends folded), saved compare-and-set on version; runs carry their backfill's
  // id in their tags (refresh/backfill).
  `
  CREATE TABLE backfills (
    id text PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('requested','canceling','canceled','failed','completed')),
    spec text NOT NULL,
    state text NOT NULL,
    version bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    ended_at bigint
  );
  CREATE INDEX backfills_status ON backfills (status, created_at);
  `,
  // 6: automation: one row per automated asset (its on/off switch and the evaluator's state for
  // it) and the global row '*' (the global switch, and the evaluator's cursor as JSON with its
  // tick number, committed compare-and-set under the row's lock); the latest evaluations of each
  // asset, in id order.
  `
  CREATE TABLE automation (
    asset text PRIMARY KEY,
    status text NOT NULL DEFAULT 'default' CHECK (status IN ('on','off','default')),
    state text,
    tick bigint NOT NULL DEFAULT 0,
    updated_at bigint NOT NULL
  );
  CREATE TABLE automation_evaluations (
    id bigserial PRIMARY KEY,
    tick bigint NOT NULL,
    asset text NOT NULL,
    evaluated_at bigint NOT NULL,
    true_count integer NOT NULL,
    total integer NOT NULL,
    tree text NOT NULL,
    run_ids text NOT NULL DEFAULT '[]'
  );
  CREATE INDEX automation_evaluations_asset ON automation_evaluations (asset, id);
  `,
]

export const SCHEMA_VERSION = MIGRATIONS.length

/** The advisory lock that serializes migrations of one schema (with the schema's name hashed in). */
const MIGRATION_LOCK = 0x52465301

/**
 * Creates the schema if needed and migrates it forward, each migration in its own transaction
 * under an advisory lock, so that two processes opening a new store at once migrate it once. A
 * schema written by a newer refresh, or a schema holding other tables but no refresh store, is
 * refused untouched.
 */
export async function checkAndMigrate(
  client: pg.PoolClient,
  schema: string,
  display: string,
  readonly: boolean,
): Promise<number> {
  const read = async (): Promise<{ version: number | null; tables: number }> => {
    const { rows } = await client.query(
      `SELECT (SELECT count(*) FROM information_schema.tables WHERE table_schema = $1)::int AS tables,
              to_regclass(quote_ident($1) || '.refresh_schema') IS NOT NULL AS versioned`,
      [schema],
    )
    const tables = rows[0].tables as number
    if (!rows[0].versioned) return { version: null, tables }
    const v = await client.query(`SELECT version FROM ${quoteIdent(schema)}.refresh_schema`)
    return { version: (v.rows[0]?.version as number | undefined) ?? 0, tables }
  }
  const check = ({ version, tables }: { version: number | null; tables: number }) => {
    if (version === null && tables > 0) {
      throw new StoreError(
        `${display}: the schema \`${schema}\` holds other tables but no refresh store; it was left untouched. Point the store at an empty schema (\`?schema=NAME\` in the URL) or database.`,
      )
    }
    if (version !== null && version > SCHEMA_VERSION) {
      throw new StoreError(
        `${display} was written by a newer version of refresh (schema ${version}; this version knows up to ${SCHEMA_VERSION}); it was left untouched. Upgrade refresh to open it.`,
      )
    }
  }
  let state = await read()
  check(state)
  if (state.version === SCHEMA_VERSION) return SCHEMA_VERSION
  if (readonly) {
    throw new StoreError(
      state.version === null
        ? `no refresh store in ${display}; run \`refresh run\` (or open it writable) once to create it.`
        : `${display} has schema ${state.version} and needs migrating to ${SCHEMA_VERSION}; open it writable once.`,
    )
  }
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`).catch(async (error) => {
    // another process created it meanwhile, or this user may not create schemas but it exists
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
    if (exists.rowCount === 0) throw error
  })
  for (;;) {
    await client.query('BEGIN')
    try {
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [MIGRATION_LOCK, schema])
      state = await read()
      check(state)
      const version = state.version ?? 0
      if (version >= SCHEMA_VERSION) {
        await client.query('COMMIT')
        return version
      }
      if (state.version === null) {
        await client.query(
          `CREATE TABLE ${quoteIdent(schema)}.refresh_schema (version integer NOT NULL, migrated_at bigint NOT NULL)`,
        )
        await client.query(`INSERT INTO ${quoteIdent(schema)}.refresh_schema VALUES (0, $1)`, [Date.now()])
      }
      await client.query(MIGRATIONS[version]!)
      await client.query(`UPDATE ${quoteIdent(schema)}.refresh_schema SET version = $1, migrated_at = $2`, [
        version + 1,
        Date.now(),
      ])
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    }
  }
}

/** A schema or table name made safe to splice into DDL (checked when the URL is read, quoted here). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}
