import { toInstigator, toRun, toTick } from '../rows.js'
import { foldsInto, settleTick } from '../rules.js'
import type {
  CommittedTick,
  InstigatorKind,
  InstigatorState,
  InstigatorStatus,
  NewTick,
  RunRecord,
  RunStatus,
  TickRecord,
} from '../types.js'
import { type Conn, type Db, statements } from './db.js'
import { Lock, lock } from './locks.js'
import type { PartitionsSql } from './partitions.js'
import type { RequestsSql } from './requests.js'

const S = statements('ticks', {
  getInstigator: 'SELECT * FROM instigators WHERE name = $1',
  lockInstigator: 'SELECT * FROM instigators WHERE name = $1 FOR UPDATE',
  listInstigators: 'SELECT * FROM instigators ORDER BY name',
  upsertInstigator: `INSERT INTO instigators (name, kind, status, enabled_at, updated_at) VALUES ($1, $2, 'default', $3, $3)
     ON CONFLICT (name) DO NOTHING`,
  setInstigatorStatus: 'UPDATE instigators SET status = $1, enabled_at = $2, updated_at = $3 WHERE name = $4',
  updateInstigatorTick:
    'UPDATE instigators SET cursor = $1, last_tick_at = $2, last_tick_id = $3, updated_at = $4 WHERE name = $5',
  insertTick: `INSERT INTO ticks (instigator, kind, tick_time, started_at, ended_at, status, run_ids, skip_reason, error, cursor)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
  getTick: 'SELECT * FROM ticks WHERE id = $1',
  foldTick: 'UPDATE ticks SET ended_at = $1, repeats = repeats + 1 WHERE id = $2',
  listTicks: 'SELECT * FROM ticks WHERE instigator = $1 ORDER BY id DESC LIMIT $2',
  ticksAfter: 'SELECT * FROM ticks WHERE id > $1 ORDER BY id LIMIT $2',
  maxTickId: 'SELECT max(id) AS id FROM ticks',
  runsEndedAfter: `SELECT * FROM runs WHERE status = ANY($1::text[]) AND ended_at >= $2 ORDER BY ended_at, id LIMIT $3`,
  // a batch of ticks, a statement per kind of row (arrays, not round trips per tick)
  upsertInstigators: `INSERT INTO instigators (name, kind, status, enabled_at, updated_at)
     SELECT name, kind, 'default', now, now FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(name, kind, now)
     ON CONFLICT (name) DO NOTHING`,
  lockInstigators: 'SELECT * FROM instigators WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE',
  getTicks: 'SELECT * FROM ticks WHERE id = ANY($1::bigint[])',
  insertTicks: `INSERT INTO ticks (instigator, kind, tick_time, started_at, ended_at, status, run_ids, skip_reason, error, cursor)
     SELECT instigator, kind, tick_time, started_at, ended_at, status, run_ids, skip_reason, error, cursor
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
       WITH ORDINALITY AS t(instigator, kind, tick_time, started_at, ended_at, status, run_ids, skip_reason, error, cursor, ord)
     ORDER BY ord
     RETURNING id`,
  foldTicks: `UPDATE ticks t SET ended_at = u.ended_at, repeats = t.repeats + 1
     FROM unnest($1::bigint[], $2::bigint[]) AS u(id, ended_at) WHERE t.id = u.id`,
  // the claims of these ticks are done: the next ones may be evaluated, from these cursors
  claimsDone: 'UPDATE tick_claims SET done_at = $2 WHERE name = ANY($1::text[])',
  updateInstigatorTicks: `UPDATE instigators i SET cursor = u.cursor, last_tick_at = u.tick_time, last_tick_id = u.tick_id,
       updated_at = u.updated_at
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(name, cursor, tick_time, tick_id, updated_at)
     WHERE i.name = u.name`,
})

/** Sensors and schedules: their persisted state (on/off, cursor) and their ticks. */
export class TicksSql {
  private readonly db: Db
  private readonly requests: RequestsSql
  private readonly partitions: PartitionsSql

  constructor(db: Db, requests: RequestsSql, partitions: PartitionsSql) {
    this.db = db
    this.requests = requests
    this.partitions = partitions
  }

  async getInstigator(name: string, c: Conn = this.db): Promise<InstigatorState | undefined> {
    const row = await c.row(S.getInstigator, [name])
    return row ? toInstigator(row) : undefined
  }

  async listInstigators(): Promise<InstigatorState[]> {
    return (await this.db.rows(S.listInstigators)).map(toInstigator)
  }

  /** The instigator's row (created if missing), locked to the end of the caller's transaction. */
  private async lockInstigator(
    c: Conn,
    name: string,
    kind: InstigatorKind,
    now: number,
  ): Promise<InstigatorState> {
    await c.run(S.upsertInstigator, [name, kind, now])
    return toInstigator((await c.row(S.lockInstigator, [name]))!)
  }

  setInstigatorStatus(
    name: string,
    kind: InstigatorKind,
    status: InstigatorStatus,
    now: number,
  ): Promise<InstigatorState> {
    return this.db.tx(async (c) => {
      const current = await this.lockInstigator(c, name, kind, now)
      const turningOn = status === 'on' && current.status !== 'on'
      await c.run(S.setInstigatorStatus, [status, turningOn ? now : current.enabledAt, now, name])
      return (await this.getInstigator(name, c))!
    })
  }

  async ensureInstigator(name: string, kind: InstigatorKind, now: number): Promise<InstigatorState> {
    await this.db.run(S.upsertInstigator, [name, kind, now])
    return (await this.getInstigator(name))!
  }

  /**
   * Several ticks with their requests and cursors in one transaction; each instigator's row is
   * locked while its tick commits, so two daemons never interleave one instigator's ticks. A
   * daemon commits a second's worth of its sensors' ticks at once (hundreds), so the rows of a
   * batch are written a statement per kind, not a round trip per row per tick; a batch that names
   * one instigator twice goes tick by tick, each seeing the one before.
   */
  commitTicks(ticks: readonly NewTick[]): Promise<CommittedTick[]> {
    return this.db.tx(async (c) => {
      let out: CommittedTick[]
      if (new Set(ticks.map((t) => t.instigator)).size < ticks.length) {
        out = []
        for (const t of ticks) out.push(await this.commitTickInTx(c, t))
      } else out = await this.commitBatchInTx(c, ticks)
      if (ticks.length > 0) {
        await c.run(S.claimsDone, [
          [...new Set(ticks.map((t) => t.instigator))],
          Math.max(...ticks.map((t) => t.endedAt)),
        ])
      }
      return out
    })
  }

  /** `commitTicks` for ticks of distinct instigators: the same outcome as tick by tick, in a few statements. */
  private async commitBatchInTx(c: Conn, ticks: readonly NewTick[]): Promise<CommittedTick[]> {
    if (ticks.length === 0) return []
    const names = ticks.map((t) => t.instigator)
    await c.run(S.upsertInstigators, [names, ticks.map((t) => t.kind), ticks.map((t) => t.startedAt)])
    // locked in name order, so two batches that share instigators cannot deadlock on them
    const current = new Map(
      (await c.rows(S.lockInstigators, [names])).map((row) => {
        const state = toInstigator(row)
        return [state.name, state] as const
      }),
    )
    const lastIds = [...current.values()].flatMap((s) => (s.lastTickId === null ? [] : [s.lastTickId]))
    const previous = new Map(
      lastIds.length === 0
        ? []
        : (await c.rows(S.getTicks, [lastIds])).map((row) => {
            const tick = toTick(row)
            return [tick.id, tick] as const
          }),
    )
    const decided: Array<{
      outcomes: CommittedTick['outcomes']
      row: Omit<TickRecord, 'id' | 'repeats'> & { foldInto: number | undefined }
    }> = []
    for (const tick of ticks) {
      const state = current.get(tick.instigator)!
      const outcomes = []
      await this.addPartitionsInTx(c, tick)
      for (const r of tick.requests ?? []) outcomes.push(await this.requests.requestInTx(c, r))
      const { status, skipReason, runIds } = settleTick(tick, outcomes)
      const cursor = tick.cursor === undefined ? state.cursor : tick.cursor
      const prev = state.lastTickId === null ? undefined : previous.get(state.lastTickId)
      const folds = prev !== undefined && foldsInto(prev, { status, skipReason, cursor, runIds })
      decided.push({
        outcomes,
        row: {
          instigator: tick.instigator,
          kind: tick.kind,
          tickTime: tick.tickTime,
          startedAt: tick.startedAt,
          endedAt: tick.endedAt,
          status,
          runIds,
          skipReason,
          error: tick.error ?? null,
          cursor,
          foldInto: folds ? prev!.id : undefined,
        },
      })
    }
    const inserts = decided.filter((d) => d.row.foldInto === undefined).map((d) => d.row)
    const ids = new Map<string, number>()
    if (inserts.length > 0) {
      // tick ids become visible in the order they are given (readers follow them with a cursor)
      await lock(c, Lock.tickIds)
      const returned = await c.rows<{ id: number }>(S.insertTicks, [
        inserts.map((t) => t.instigator),
        inserts.map((t) => t.kind),
        inserts.map((t) => t.tickTime),
        inserts.map((t) => t.startedAt),
        inserts.map((t) => t.endedAt),
        inserts.map((t) => t.status),
        inserts.map((t) => JSON.stringify(t.runIds)),
        inserts.map((t) => t.skipReason),
        inserts.map((t) => (t.error ? JSON.stringify(t.error) : null)),
        inserts.map((t) => t.cursor),
      ])
      // ids are drawn as the rows are inserted, in the order given
      const sorted = returned.map((r) => r.id).sort((a, b) => a - b)
      inserts.forEach((t, i) => {
        ids.set(t.instigator, sorted[i]!)
      })
    }
    const folds = decided.flatMap((d) => (d.row.foldInto === undefined ? [] : [d.row]))
    if (folds.length > 0) {
      await c.run(S.foldTicks, [folds.map((t) => t.foldInto), folds.map((t) => t.endedAt)])
      for (const t of folds) ids.set(t.instigator, t.foldInto!)
    }
    const rows = decided.map((d) => d.row)
    await c.run(S.updateInstigatorTicks, [
      rows.map((t) => t.instigator),
      rows.map((t) => t.cursor),
      rows.map((t) => t.tickTime),
      rows.map((t) => ids.get(t.instigator)!),
      rows.map((t) => t.endedAt),
    ])
    const written = new Map(
      (await c.rows(S.getTicks, [[...ids.values()]])).map((row) => {
        const tick = toTick(row)
        return [tick.id, tick] as const
      }),
    )
    return decided.map((d) => ({ tick: written.get(ids.get(d.row.instigator)!)!, outcomes: d.outcomes }))
  }

  /** The dynamic partition keys a tick adds, before its requests (which may name them). */
  private async addPartitionsInTx(c: Conn, tick: NewTick): Promise<void> {
    for (const [name, keys] of Object.entries(tick.addDynamicPartitions ?? {}))
      await this.partitions.addDynamicInTx(c, name, keys, tick.startedAt)
  }

  private async commitTickInTx(c: Conn, tick: NewTick): Promise<CommittedTick> {
    const current = await this.lockInstigator(c, tick.instigator, tick.kind, tick.startedAt)
    const outcomes = []
    await this.addPartitionsInTx(c, tick)
    for (const r of tick.requests ?? []) outcomes.push(await this.requests.requestInTx(c, r))
    const { status, skipReason, runIds } = settleTick(tick, outcomes)
    const cursor = tick.cursor === undefined ? current.cursor : tick.cursor
    const previous = current.lastTickId === null ? undefined : await this.getTick(current.lastTickId, c)
    let id: number
    if (previous && foldsInto(previous, { status, skipReason, cursor, runIds })) {
      await c.run(S.foldTick, [tick.endedAt, previous.id])
      id = previous.id
    } else {
      // tick ids become visible in the order they are given (readers follow them with a cursor)
      await lock(c, Lock.tickIds)
      const row = await c.row<{ id: number }>(S.insertTick, [
        tick.instigator,
        tick.kind,
        tick.tickTime,
        tick.startedAt,
        tick.endedAt,
        status,
        JSON.stringify(runIds),
        skipReason,
        tick.error ? JSON.stringify(tick.error) : null,
        cursor,
      ])
      id = row!.id
    }
    await c.run(S.updateInstigatorTick, [cursor, tick.tickTime, id, tick.endedAt, tick.instigator])
    return { tick: (await this.getTick(id, c))!, outcomes }
  }

  async getTick(id: number, c: Conn = this.db): Promise<TickRecord | undefined> {
    const row = await c.row(S.getTick, [id])
    return row ? toTick(row) : undefined
  }

  async listTicks(instigator: string, limit = 50): Promise<TickRecord[]> {
    return (await this.db.rows(S.listTicks, [instigator, limit])).map(toTick)
  }

  async maxTickId(): Promise<number> {
    return (await this.db.row<{ id: number | null }>(S.maxTickId))?.id ?? 0
  }

  async ticksAfter(afterId: number, limit = 1000): Promise<TickRecord[]> {
    return (await this.db.rows(S.ticksAfter, [afterId, limit])).map(toTick)
  }

  async runsEndedAfter(statuses: readonly RunStatus[], endedAt: number, limit = 1000): Promise<RunRecord[]> {
    return (await this.db.rows(S.runsEndedAfter, [statuses, endedAt, limit])).map(toRun)
  }
}
