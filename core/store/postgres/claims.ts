import { type Row, toRun } from '../rows.js'
import { DAEMON_PRESENCE_PREFIX, type RunRecord, type TickClaim } from '../types.js'
import { type Conn, type Db, statements } from './db.js'
import type { MaintenanceSql } from './maintenance.js'

/** How many queued runs one launch claim looks at beyond the number it may claim. */
const SCAN_EXTRA = 200
/** A claimed run not started after this long no longer counts against its guard and holds. */
const LAUNCHING_FOR_MS = 120_000

const S = statements('claims', {
  liveDaemons: `SELECT holder FROM leases WHERE left(name, length($1)) = $1 AND expires_at > $2`,
  // queued runs no other live daemon claimed, oldest first; rows another transaction is claiming
  // right now are skipped rather than waited for. (No join here: a row that changed while this
  // waited is rechecked against these conditions alone, with its new launched_by.)
  candidates: `SELECT * FROM runs
     WHERE status = 'queued' AND NOT (id = ANY($1::text[]))
       AND (launched_by IS NULL OR launched_by = $2 OR NOT (launched_by = ANY($3::text[])))
     ORDER BY seq LIMIT $4
     FOR UPDATE SKIP LOCKED`,
  holdsOf: 'SELECT run_id, hold, hold_limit FROM run_holds WHERE run_id = ANY($1::text[])',
  // runs that hold a hold or guard: in flight, or claimed by a daemon and being launched
  holdUse: `SELECT h.hold, count(*)::int AS n FROM run_holds h JOIN runs r ON r.id = h.run_id
     WHERE h.hold = ANY($1::text[]) AND (r.status IN ('started', 'paused')
       OR (r.status = 'queued' AND r.launched_by IS NOT NULL AND r.launch_claimed_at > $2))
     GROUP BY h.hold`,
  guardUse: `SELECT guard, count(*)::int AS n FROM runs
     WHERE guard = ANY($1::text[]) AND (status IN ('started', 'paused')
       OR (status = 'queued' AND launched_by IS NOT NULL AND launch_claimed_at > $2 AND NOT (id = ANY($3::text[]))))
     GROUP BY guard`,
  firstQueued: `SELECT DISTINCT ON (guard) guard, id FROM runs
     WHERE guard = ANY($1::text[]) AND status = 'queued' ORDER BY guard, seq`,
  claim: `UPDATE runs SET launched_by = $1, launch_claimed_at = $2 WHERE id = ANY($3::text[])`,
  claimTicks: `INSERT INTO tick_claims AS t (name, slot, holder, claimed_at, done_at)
     SELECT name, slot, $3, $4, NULL FROM unnest($1::text[], $2::bigint[]) AS c(name, slot)
     ON CONFLICT (name) DO UPDATE SET slot = excluded.slot, holder = excluded.holder, claimed_at = excluded.claimed_at,
       done_at = NULL
     WHERE excluded.slot > t.slot
       AND (t.done_at IS NOT NULL OR t.holder = excluded.holder
         OR NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = $5 || t.holder AND l.expires_at > $4))
     RETURNING name`,
  finishClaims: `UPDATE tick_claims SET done_at = $3 WHERE name = ANY($1::text[]) AND holder = $2 AND done_at IS NULL`,
  tickClaims: 'SELECT * FROM tick_claims ORDER BY name',
})

/** Several daemons on one store: claims of queued runs to launch, and of sensors' and schedules' ticks. */
export class ClaimsSql {
  private readonly db: Db
  private readonly maintenance: MaintenanceSql

  constructor(db: Db, maintenance: MaintenanceSql) {
    this.db = db
    this.maintenance = maintenance
  }

  /**
   * See `RunStore.claimLaunches`. Candidates are locked with SKIP LOCKED, so daemons claiming at
   * once split the queue instead of waiting on each other; a run is launchable when maintenance
   * is off, it is the oldest queued run of its guard and the guard has room, and each of its holds
   * has room, counting runs being launched (claimed, not started yet) and those claimed here.
   */
  claimLaunches(
    holder: string,
    limit: number,
    now: number,
    exclude: readonly string[] = [],
  ): Promise<RunRecord[]> {
    if (limit <= 0) return Promise.resolve([])
    return this.db.tx(async (c) => {
      if (await this.maintenance.gateShared(c)) return []
      const live = (await c.rows<{ holder: string }>(S.liveDaemons, [DAEMON_PRESENCE_PREFIX, now])).map(
        (r) => r.holder,
      )
      const candidates = (await c.rows(S.candidates, [exclude, holder, live, limit + SCAN_EXTRA])).map(toRun)
      if (candidates.length === 0) return []
      const chosen = await this.launchable(c, candidates, limit, now)
      if (chosen.length === 0) return []
      await c.run(S.claim, [holder, now, chosen.map((r) => r.id)])
      return chosen.map((r) => ({ ...r, launchedBy: holder }))
    })
  }

  private async launchable(
    c: Conn,
    candidates: RunRecord[],
    limit: number,
    now: number,
  ): Promise<RunRecord[]> {
    const since = now - LAUNCHING_FOR_MS
    const ids = candidates.map((r) => r.id)
    const holds = new Map<string, Array<{ hold: string; limit: number }>>()
    for (const h of await c.rows<{ run_id: string; hold: string; hold_limit: number }>(S.holdsOf, [ids])) {
      const list = holds.get(h.run_id) ?? []
      list.push({ hold: h.hold, limit: h.hold_limit })
      holds.set(h.run_id, list)
    }
    const holdKeys = [...new Set([...holds.values()].flat().map((h) => h.hold))]
    const holdUse = new Map<string, number>()
    if (holdKeys.length > 0) {
      for (const r of await c.rows<{ hold: string; n: number }>(S.holdUse, [holdKeys, since]))
        holdUse.set(r.hold, r.n)
    }
    const guards = [...new Set(candidates.flatMap((r) => (r.guard === null ? [] : [r.guard])))]
    const guardUse = new Map<string, number>()
    const firstQueued = new Map<string, string>()
    if (guards.length > 0) {
      // a candidate's own earlier claim (a launch that did not start it) does not count against it
      for (const r of await c.rows<{ guard: string; n: number }>(S.guardUse, [guards, since, ids]))
        guardUse.set(r.guard, r.n)
      for (const r of await c.rows<{ guard: string; id: string }>(S.firstQueued, [guards]))
        firstQueued.set(r.guard, r.id)
    }
    const out: RunRecord[] = []
    for (const run of candidates) {
      if (out.length >= limit) break
      const runHolds = holds.get(run.id) ?? []
      if (runHolds.some((h) => (holdUse.get(h.hold) ?? 0) >= h.limit)) continue
      if (run.guard !== null && run.guardLimit !== null) {
        if (firstQueued.get(run.guard) !== run.id) continue
        if ((guardUse.get(run.guard) ?? 0) >= run.guardLimit) continue
        guardUse.set(run.guard, (guardUse.get(run.guard) ?? 0) + 1)
      }
      for (const h of runHolds) holdUse.set(h.hold, (holdUse.get(h.hold) ?? 0) + 1)
      out.push(run)
    }
    return out
  }

  async claimTicks(
    claims: ReadonlyArray<{ name: string; slot: number }>,
    holder: string,
    now: number,
  ): Promise<string[]> {
    if (claims.length === 0) return []
    // one row per instigator in the statement (its highest slot)
    const slots = new Map<string, number>()
    for (const c of claims) slots.set(c.name, Math.max(c.slot, slots.get(c.name) ?? c.slot))
    const rows = await this.db.rows<{ name: string }>(S.claimTicks, [
      [...slots.keys()],
      [...slots.values()],
      holder,
      now,
      DAEMON_PRESENCE_PREFIX,
    ])
    const granted = new Set(rows.map((r) => r.name))
    return [...slots.keys()].filter((name) => granted.has(name))
  }

  async finishTickClaims(names: readonly string[], holder: string, now: number): Promise<void> {
    if (names.length > 0) await this.db.run(S.finishClaims, [names, holder, now])
  }

  async tickClaims(): Promise<TickClaim[]> {
    return (await this.db.rows<Row>(S.tickClaims)).map((r) => ({
      name: r.name as string,
      slot: r.slot as number,
      holder: r.holder as string,
      claimedAt: r.claimed_at as number,
      doneAt: (r.done_at as number | null) ?? null,
    }))
  }
}
