import type pg from 'pg'
import { StoreBusyError, StoreError } from '../../errors.js'
import type { Row } from '../rows.js'

/** A statement: a name (prepared once per connection) and its text, with `$n` parameters only. */
export interface Sql {
  readonly name: string
  readonly text: string
}

/** A group's statements, named `refresh.<group>.<key>` so that each is prepared once per connection. */
export function statements<K extends string>(group: string, texts: Record<K, string>): Record<K, Sql> {
  const out = {} as Record<K, Sql>
  for (const key of Object.keys(texts) as K[])
    out[key] = { name: `refresh.${group}.${key}`, text: texts[key] }
  return out
}

/** What runs statements: the pool (each statement on its own) or a transaction's connection. */
export interface Conn {
  rows<T = Row>(sql: Sql, values?: readonly unknown[]): Promise<T[]>
  row<T = Row>(sql: Sql, values?: readonly unknown[]): Promise<T | undefined>
  /** Runs a statement; the number of rows it changed. */
  run(sql: Sql, values?: readonly unknown[]): Promise<number>
}

export interface DbOptions {
  /** Connections this process may open at most (default 4). */
  poolSize: number
  /** A statement running longer is canceled (default 30 s): a `StoreBusyError`. */
  statementTimeoutMs: number
  /** How long a statement waits for a row or advisory lock before a `StoreBusyError` (default 5 s). */
  lockTimeoutMs: number
  /** How long an open store keeps retrying while the server is unreachable (a restart, a failover) before it fails (default 30 s). */
  reconnectMs: number
  readonly: boolean
}

/** Serialization failures and deadlocks: the transaction is retried whole, a bounded number of times. */
const CONFLICTS = new Set(['40001', '40P01'])
const MAX_CONFLICT_ATTEMPTS = 12

/** The server went away or is not there yet (restart, failover, network). */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up)
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '08007',
])

export function isConnectionError(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown }
  if (typeof e?.code === 'string' && CONNECTION_CODES.has(e.code)) return true
  return (
    typeof e?.message === 'string' &&
    /Connection terminated|connection error|not queryable|timeout exceeded when trying to connect|Client was closed/i.test(
      e.message,
    )
  )
}

/** A failure that ends the whole transaction (a conflict, a lost connection), not just one statement of it. */
export function mustRetryWhole(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code
  return (typeof code === 'string' && CONFLICTS.has(code)) || isConnectionError(error)
}

/**
 * A pool of connections to one store (one schema) and the ways to use it: single statements,
 * and transactions that are retried whole on a serialization failure or deadlock, and across a
 * server restart. A transaction whose COMMIT was in flight when the connection broke is never run
 * twice: its transaction id, read when it began, tells after reconnecting whether it committed.
 */
export class Db implements Conn {
  private closed = false
  private readonly pool: pg.Pool
  private readonly options: DbOptions
  private readonly displayName: string

  constructor(pool: pg.Pool, options: DbOptions, displayName: string) {
    this.pool = pool
    this.options = options
    this.displayName = displayName
    // an idle connection the server dropped: the pool removes it; the next query reconnects
    pool.on('error', () => {})
  }

  get isOpen(): boolean {
    return !this.closed
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.pool.end()
  }

  /** Connections open now (for the figures: they stay within the pool size). */
  get connections(): number {
    return this.pool.totalCount
  }

  rows<T = Row>(sql: Sql, values: readonly unknown[] = []): Promise<T[]> {
    return this.retrying(async () => (await this.pool.query({ ...sql, values: [...values] })).rows as T[])
  }

  async row<T = Row>(sql: Sql, values: readonly unknown[] = []): Promise<T | undefined> {
    return (await this.rows<T>(sql, values))[0]
  }

  run(sql: Sql, values: readonly unknown[] = []): Promise<number> {
    return this.retrying(async () => (await this.pool.query({ ...sql, values: [...values] })).rowCount ?? 0)
  }

  /** A plain statement outside the named set (migrations, DDL). */
  exec(text: string, values: unknown[] = []): Promise<pg.QueryResult> {
    return this.retrying(() => this.pool.query(text, values))
  }

  /**
   * Runs `fn` in one READ COMMITTED transaction. Atomicity across processes comes from what `fn`
   * locks (rows, advisory locks) and from unique constraints; a deadlock or serialization failure
   * reruns it whole, and so does a connection lost before COMMIT (the server rolled it back).
   */
  tx<T>(fn: (conn: Conn) => Promise<T>): Promise<T> {
    return this.retrying(async () => {
      const client = await this.pool.connect()
      let xid: string | undefined
      let committing = false
      let broken: Error | undefined
      let result: T
      try {
        const begun = (await client.query(
          'BEGIN; SELECT pg_current_xact_id()::text AS xid',
        )) as unknown as pg.QueryResult[]
        xid = begun[1]!.rows[0]!.xid as string
        result = await fn(clientConn(client))
        committing = true
        await client.query('COMMIT')
        return result
      } catch (error) {
        if (isConnectionError(error)) {
          broken = error as Error
          // COMMIT was sent: the server may have committed it before the connection broke
          if (committing && xid !== undefined && (await this.committed(xid))) return result!
        } else {
          await client.query('ROLLBACK').catch((e: unknown) => {
            broken = e as Error
          })
        }
        throw error
      } finally {
        client.release(broken)
      }
    })
  }

  /** A connection of the pool for the caller to release (a generator's), the driver's errors translated. */
  async acquire(): Promise<{ client: pg.PoolClient; release(broken?: Error): void }> {
    if (this.closed) throw new StoreError(`the store ${this.displayName} is closed.`)
    try {
      const client = await this.pool.connect()
      return { client, release: (broken) => client.release(broken) }
    } catch (error) {
      throw translate(error, this.displayName)
    }
  }

  /**
   * One connection for a long operation of its own (copying history): no retries, the driver's
   * errors translated; the connection is dropped if it broke.
   */
  async session<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError(`the store ${this.displayName} is closed.`)
    let client: pg.PoolClient
    try {
      client = await this.pool.connect()
    } catch (error) {
      throw translate(error, this.displayName)
    }
    let broken: Error | undefined
    try {
      return await fn(client)
    } catch (error) {
      if (isConnectionError(error)) broken = error as Error
      throw translate(error, this.displayName)
    } finally {
      client.release(broken)
    }
  }

  /** Whether a transaction whose COMMIT outcome was lost committed (waits for the server to be back). */
  private committed(xid: string): Promise<boolean> {
    return this.retrying(async () => {
      for (;;) {
        const { rows } = await this.pool.query('SELECT pg_xact_status($1::xid8) AS status', [xid])
        const status = rows[0]?.status as string | null
        if (status !== 'in progress') return status === 'committed'
        await sleep(20)
      }
    })
  }

  /**
   * Runs an operation, again after a deadlock or serialization failure (bounded) and while the
   * server is unreachable (up to `reconnectMs`); any other failure is translated and thrown.
   */
  private async retrying<T>(op: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.options.reconnectMs
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new StoreError(`the store ${this.displayName} is closed.`)
      try {
        return await op()
      } catch (error) {
        if (this.closed) throw new StoreError(`the store ${this.displayName} is closed.`)
        const code = (error as { code?: unknown }).code
        if (typeof code === 'string' && CONFLICTS.has(code) && attempt < MAX_CONFLICT_ATTEMPTS) {
          await sleep(Math.random() * Math.min(5 * 2 ** attempt, 200))
          continue
        }
        if (isConnectionError(error) && Date.now() < deadline) {
          await sleep(Math.min(50 * 2 ** Math.min(attempt, 5), 1_000))
          continue
        }
        throw translate(error, this.displayName)
      }
    }
  }
}

function clientConn(client: pg.PoolClient): Conn {
  const conn: Conn = {
    async rows<T>(sql: Sql, values: readonly unknown[] = []) {
      return (await client.query({ ...sql, values: [...values] })).rows as T[]
    },
    async row<T>(sql: Sql, values: readonly unknown[] = []) {
      return (await conn.rows<T>(sql, values))[0]
    },
    async run(sql: Sql, values: readonly unknown[] = []) {
      return (await client.query({ ...sql, values: [...values] })).rowCount ?? 0
    },
  }
  return conn
}

/**
 * The driver's and the server's errors as the store's: a lock or statement timeout is a
 * `StoreBusyError`; an unreachable server, a refused login, a missing database or a read-only
 * store a `StoreError` that says what to fix (never with the password). Anything else is a bug
 * and goes up as it is.
 */
export function translate(error: unknown, store: string): unknown {
  if (error instanceof StoreError || error instanceof StoreBusyError) return error
  const e = error as { code?: unknown; message?: unknown }
  const code = typeof e?.code === 'string' ? e.code : undefined
  const message = typeof e?.message === 'string' ? e.message : String(error)
  if (code === '55P03' || code === '57014') {
    return new StoreBusyError(
      `the store ${store} is busy: ${code === '55P03' ? 'another process holds a lock this write needs' : 'a statement ran past the statement timeout'} (${message}).`,
      { cause: error },
    )
  }
  if (isConnectionError(error) || code === 'ENOTFOUND') {
    return new StoreError(
      `cannot reach the store ${store} (${message}); check that the server is up and the host and port in the store URL (--store or REFRESH_STORE).`,
      { cause: error },
    )
  }
  if (code === '28P01' || code === '28000') {
    return new StoreError(
      `the store ${store} refused the login (${message}); check the user and password in the store URL (--store or REFRESH_STORE).`,
      { cause: error },
    )
  }
  if (code === '3D000') {
    return new StoreError(
      `the store ${store} names a database that does not exist (${message}); create it (\`createdb NAME\`) or fix the URL.`,
      { cause: error },
    )
  }
  if (code === '42501') {
    return new StoreError(
      `the store ${store} refused this user a permission it needs (${message}); grant it, or use a user that owns the store's schema.`,
      { cause: error },
    )
  }
  if (code === '25006') {
    return new StoreError(`the store ${store} is open for reading only; this needs a writable store.`, {
      cause: error,
    })
  }
  return error
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
