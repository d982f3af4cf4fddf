import type Database from 'better-sqlite3'
import { type Row, toInstigator, toRun, toTick } from '../rows.js'
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
import type { PartitionsSql } from './partitions.js'
import type { RequestsSql } from './requests.js'
import { statements } from './rows.js'

/** Sensors and schedules: their persisted state (on/off, cursor) and their ticks. */
export class TicksSql {
  private readonly s

  private readonly db: Database.Database
  private readonly requests: RequestsSql
  private readonly partitions: PartitionsSql

  constructor(db: Database.Database, requests: RequestsSql, partitions: PartitionsSql) {
    this.db = db
    this.requests = requests
    this.partitions = partitions
    this.s = statements(db, {
      getInstigator: 'SELECT * FROM instigators WHERE name = ?',
      listInstigators: 'SELECT * FROM instigators ORDER BY name',
      upsertInstigator: `INSERT INTO instigators (name, kind, status, enabled_at, updated_at) VALUES (@name, @kind, 'default', @now, @now)
         ON CONFLICT (name) DO NOTHING`,
      setInstigatorStatus: 'UPDATE instigators SET status = ?, enabled_at = ?, updated_at = ? WHERE name = ?',
      claimDone: 'UPDATE tick_claims SET done_at = ? WHERE name = ?',
      updateInstigatorTick:
        'UPDATE instigators SET cursor = ?, last_tick_at = ?, last_tick_id = ?, updated_at = ? WHERE name = ?',
      insertTick: `INSERT INTO ticks (instigator, kind, tick_time, started_at, ended_at, status, run_ids, skip_reason, error, cursor)
         VALUES (@instigator, @kind, @tick_time, @started_at, @ended_at, @status, @run_ids, @skip_reason, @error, @cursor)`,
      getTick: 'SELECT * FROM ticks WHERE id = ?',
      foldTick: 'UPDATE ticks SET ended_at = ?, repeats = repeats + 1 WHERE id = ?',
      listTicks: 'SELECT * FROM ticks WHERE instigator = ? ORDER BY id DESC LIMIT ?',
      ticksAfter: 'SELECT * FROM ticks WHERE id > ? ORDER BY id LIMIT ?',
      maxTickId: 'SELECT max(id) AS id FROM ticks',
      runsEndedAfter: `SELECT * FROM runs WHERE status IN (SELECT value FROM json_each(?)) AND ended_at >= ?
         ORDER BY ended_at, id LIMIT ?`,
    })
  }

  getInstigator(name: string): InstigatorState | undefined {
    const row = this.s.getInstigator.get(name) as Row | undefined
    return row ? toInstigator(row) : undefined
  }

  listInstigators(): InstigatorState[] {
    return (this.s.listInstigators.all() as Row[]).map(toInstigator)
  }

  /**
   * Turns a sensor or schedule on or off (persisted). Turning one on records when, so that a
   * schedule never fires for times before it was on, however long it was off.
   */
  setInstigatorStatus(
    name: string,
    kind: InstigatorKind,
    status: InstigatorStatus,
    now: number,
  ): InstigatorState {
    return this.db
      .transaction(() => {
        this.s.upsertInstigator.run({ name, kind, now })
        const current = this.getInstigator(name)!
        const turningOn = status === 'on' && current.status !== 'on'
        this.s.setInstigatorStatus.run(status, turningOn ? now : current.enabledAt, now, name)
        return this.getInstigator(name)!
      })
      .immediate()
  }

  ensureInstigator(name: string, kind: InstigatorKind, now: number): InstigatorState {
    return this.db
      .transaction(() => {
        this.s.upsertInstigator.run({ name, kind, now })
        return this.getInstigator(name)!
      })
      .immediate()
  }

  /** Several ticks (a daemon iteration's worth) with their requests and cursors, in one transaction. */
  commitTicks(ticks: readonly NewTick[]): CommittedTick[] {
    return this.db.transaction(() => ticks.map((t) => this.commitTickInTx(t))).immediate()
  }

  private commitTickInTx(tick: NewTick): CommittedTick {
    this.s.upsertInstigator.run({ name: tick.instigator, kind: tick.kind, now: tick.startedAt })
    for (const [name, keys] of Object.entries(tick.addDynamicPartitions ?? {}))
      this.partitions.addDynamicInTx(name, keys, tick.startedAt)
    const outcomes = (tick.requests ?? []).map((r) => this.requests.requestInTx(r))
    const { status, skipReason, runIds } = settleTick(tick, outcomes)
    const current = this.getInstigator(tick.instigator)!
    const cursor = tick.cursor === undefined ? current.cursor : tick.cursor
    const previous = current.lastTickId === null ? undefined : this.getTick(current.lastTickId)
    let id: number
    if (previous && foldsInto(previous, { status, skipReason, cursor, runIds })) {
      this.s.foldTick.run(tick.endedAt, previous.id)
      id = previous.id
    } else {
      const info = this.s.insertTick.run({
        instigator: tick.instigator,
        kind: tick.kind,
        tick_time: tick.tickTime,
        started_at: tick.startedAt,
        ended_at: tick.endedAt,
        status,
        run_ids: JSON.stringify(runIds),
        skip_reason: skipReason,
        error: tick.error ? JSON.stringify(tick.error) : null,
        cursor,
      })
      id = Number(info.lastInsertRowid)
    }
    this.s.updateInstigatorTick.run(cursor, tick.tickTime, id, tick.endedAt, tick.instigator)
    // the claim of this tick is done: the next one may be evaluated, from this cursor
    this.s.claimDone.run(tick.endedAt, tick.instigator)
    return { tick: this.getTick(id)!, outcomes }
  }

  getTick(id: number): TickRecord | undefined {
    const row = this.s.getTick.get(id) as Row | undefined
    return row ? toTick(row) : undefined
  }

  listTicks(instigator: string, limit = 50): TickRecord[] {
    return (this.s.listTicks.all(instigator, limit) as Row[]).map(toTick)
  }

  maxTickId(): number {
    return (this.s.maxTickId.get() as { id: number | null }).id ?? 0
  }

  ticksAfter(afterId: number, limit = 1000): TickRecord[] {
    return (this.s.ticksAfter.all(afterId, limit) as Row[]).map(toTick)
  }

  runsEndedAfter(statuses: readonly RunStatus[], endedAt: number, limit = 1000): RunRecord[] {
    return (this.s.runsEndedAfter.all(JSON.stringify(statuses), endedAt, limit) as Row[]).map(toRun)
  }
}
