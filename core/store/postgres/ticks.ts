import { toInstigator, toRun, toTick } from '../rows.js'
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
})

/** Sensors and schedules: their persisted state (on/off, cursor) and their ticks. */
export class TicksSql {
  private readonly db: Db
  private readonly requests: RequestsSql

  constructor(db: Db, requests: RequestsSql) {
    this.db = db
    this.requests = requests
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
   * locked while its tick commits, so two daemons never interleave one instigator's ticks.
   */
  commitTicks(ticks: readonly NewTick[]): Promise<CommittedTick[]> {
    return this.db.tx(async (c) => {
      const out: CommittedTick[] = []
      for (const t of ticks) out.push(await this.commitTickInTx(c, t))
      return out
    })
  }

  private async commitTickInTx(c: Conn, tick: NewTick): Promise<CommittedTick> {
    const current = await this.lockInstigator(c, tick.instigator, tick.kind, tick.startedAt)
    const outcomes = []
    for (const r of tick.requests ?? []) outcomes.push(await this.requests.requestInTx(c, r))
    const runIds = [...new Set(outcomes.flatMap((o) => ('runId' in o ? [o.runId] : [])))]
    let status = tick.status
    let skipReason = tick.skipReason ?? null
    if (outcomes.length > 0 && outcomes.every((o) => o.outcome === 'duplicate' || o.outcome === 'skipped')) {
      status = 'skipped'
      skipReason = outcomes
        .map((o, i) =>
          o.outcome === 'duplicate'
            ? `run key ${tick.requests![i]!.runKey} already used by run ${o.runId}`
            : o.reason,
        )
        .join('; ')
    }
    const cursor = tick.cursor === undefined ? current.cursor : tick.cursor
    const previous = current.lastTickId === null ? undefined : await this.getTick(current.lastTickId, c)
    let id: number
    if (
      status === 'skipped' &&
      previous?.status === 'skipped' &&
      previous.skipReason === skipReason &&
      previous.cursor === cursor &&
      previous.runIds.length === 0 &&
      runIds.length === 0
    ) {
      // the same skip again: fold it into the previous row instead of a row a second forever
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
