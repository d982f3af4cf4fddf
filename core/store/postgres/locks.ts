import { type Conn, statements } from './db.js'

/**
 * Transaction-scoped advisory locks, one per guarded name, that serialize the check-then-write
 * operations of one guard, hold, pool or id sequence across every process on every host. The
 * schema's name is hashed in, so two stores in one database never wait for each other. They are
 * always taken in the order of this enum (and by name within one kind), so they cannot deadlock
 * among themselves.
 */
export const Lock = {
  guard: 1,
  hold: 2,
  pool: 3,
  /** Held from inserting events (or ticks) to COMMIT: ids become visible in the order they were given. */
  eventIds: 4,
  tickIds: 5,
  instigator: 6,
} as const

const NAMESPACE = 0x5246_0000

const S = statements('locks', {
  lock: `SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || ':' || $2))`,
})

/** Takes a transaction's advisory lock on `name` of a kind (held until COMMIT or ROLLBACK). */
export async function lock(conn: Conn, kind: (typeof Lock)[keyof typeof Lock], name = ''): Promise<void> {
  await conn.rows(S.lock, [NAMESPACE + kind, name])
}

/** Takes the locks of several names of one kind, in name order. */
export async function lockAll(
  conn: Conn,
  kind: (typeof Lock)[keyof typeof Lock],
  names: Iterable<string>,
): Promise<void> {
  for (const name of [...new Set(names)].sort()) await lock(conn, kind, name)
}
