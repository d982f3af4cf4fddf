import type Database from 'better-sqlite3'
import type { Row } from '../rows.js'
import { DAEMON_PRESENCE_PREFIX, type RunRecord, type TickClaim } from '../types.js'
import type { RequestsSql } from './requests.js'
import { statements } from './rows.js'

/** How many queued runs one launch claim looks at beyond the number it may claim. */
const SCAN_EXTRA = 500

/** Several daemons on one store: claims of queued runs to launch, and of sensors' and schedules' ticks. */
export class ClaimsSql {
  private readonly s

  private readonly db: Database.Database
  private readonly requests: RequestsSql

  constructor(db: Database.Database, requests: RequestsSql) {
    this.db = db
    this.requests = requests
    this.s = statements(db, {
      liveDaemons: `SELECT substr(name, length(@prefix) + 1) AS holder FROM leases
         WHERE substr(name, 1, length(@prefix)) = @prefix AND expires_at > @now`,
      claimLaunch: `UPDATE runs SET launched_by = ?, launch_claimed_at = ? WHERE id = ? AND status = 'queued'`,
      claimTick: `INSERT INTO tick_claims (name, slot, holder, claimed_at, done_at) VALUES (@name, @slot, @holder, @now, NULL)
         ON CONFLICT (name) DO UPDATE SET slot = excluded.slot, holder = excluded.holder, claimed_at = excluded.claimed_at,
           done_at = NULL
         WHERE excluded.slot > tick_claims.slot
           AND (tick_claims.done_at IS NOT NULL OR tick_claims.holder = excluded.holder
             OR NOT EXISTS (SELECT 1 FROM leases WHERE name = @prefix || tick_claims.holder AND expires_at > @now))
         RETURNING name`,
      finishClaim: 'UPDATE tick_claims SET done_at = ? WHERE name = ? AND holder = ? AND done_at IS NULL',
      tickClaims: 'SELECT * FROM tick_claims ORDER BY name',
    })
  }

  /** See `RunStore.claimLaunches`: one IMMEDIATE transaction, so two daemons never claim one run. */
  claimLaunches(holder: string, limit: number, now: number, exclude: readonly string[] = []): RunRecord[] {
    if (limit <= 0) return []
    return this.db
      .transaction(() => {
        const live = new Set(
          (this.s.liveDaemons.all({ prefix: DAEMON_PRESENCE_PREFIX, now }) as Array<{ holder: string }>).map(
            (r) => r.holder,
          ),
        )
        const skip = new Set(exclude)
        const out: RunRecord[] = []
        for (const run of this.requests.queuedRuns(limit + skip.size + SCAN_EXTRA)) {
          if (out.length >= limit) break
          if (!run.launchable || skip.has(run.id)) continue
          if (run.launchedBy !== null && run.launchedBy !== holder && live.has(run.launchedBy)) continue
          this.s.claimLaunch.run(holder, now, run.id)
          const { launchable: _, ...record } = run
          out.push({ ...record, launchedBy: holder })
        }
        return out
      })
      .immediate()
  }

  claimTicks(claims: ReadonlyArray<{ name: string; slot: number }>, holder: string, now: number): string[] {
    if (claims.length === 0) return []
    return this.db
      .transaction(() =>
        claims.flatMap((c) => {
          const row = this.s.claimTick.get({
            name: c.name,
            slot: c.slot,
            holder,
            now,
            prefix: DAEMON_PRESENCE_PREFIX,
          }) as { name: string } | undefined
          return row ? [row.name] : []
        }),
      )
      .immediate()
  }

  finishTickClaims(names: readonly string[], holder: string, now: number): void {
    if (names.length === 0) return
    this.db.transaction(() => {
      for (const name of names) this.s.finishClaim.run(now, name, holder)
    })()
  }

  tickClaims(): TickClaim[] {
    return (this.s.tickClaims.all() as Row[]).map((r) => ({
      name: r.name as string,
      slot: r.slot as number,
      holder: r.holder as string,
      claimedAt: r.claimed_at as number,
      doneAt: (r.done_at as number | null) ?? null,
    }))
  }
}
