import { hostname } from 'node:os'
import type { AssetDefinition } from './definitions.js'
import { pidAlive } from './processes.js'
import type { RunStore } from './store/run-store.js'
import {
  FINISHED_RUN_STATUSES,
  type RecoveredRun,
  type RecoverOptions,
  type RunRecord,
} from './store/types.js'

export interface Recovery {
  recovered: RecoveredRun[]
  /** Assets whose `recover` hook ran, with what it returned or the error it threw. */
  hooks: Array<{ asset: string; runIds: string[]; result?: unknown; error?: Error }>
}

/** A run owned by another host counts as gone once it has shown no sign of life for this long. */
const OTHER_HOST_GONE_AFTER_MS = 60_000

/**
 * Crash recovery as the CLI and the daemon do it at start and on an interval: runs whose process
 * died are marked failed (interrupted), then each asset with a `recover` hook is called once with
 * those of the runs that planned it, to stop the remote work they left behind and remove the
 * files they left under temporary names (not for a run whose process is still alive here: it was
 * only silent too long, and stops its own work once it finds the run lost). The runs an asset reports leftovers of (`leftoverRuns`)
 * that have ended with their process gone are added: a run closed by another path (`refresh
 * cancel` of a dead run, a second Ctrl-C, `refresh logs --follow`) is swept too. A run still
 * alive never is.
 */
export async function recoverRuns(
  store: Pick<RunStore, 'recoverInterruptedRuns' | 'getRun'>,
  assets: readonly AssetDefinition[],
  now?: number,
  /** Only these runs, or another time after which a silent owner elsewhere counts as gone. */
  options: Omit<RecoverOptions, 'now'> = {},
): Promise<Recovery> {
  const recovered = await store.recoverInterruptedRuns(now === undefined ? options : { ...options, now })
  const hooks: Recovery['hooks'] = []
  const runs = new Map<string, Promise<RunRecord | undefined>>()
  const getRun = (id: string) => {
    const known = runs.get(id)
    if (known) return known
    const run = store.getRun(id)
    runs.set(id, run)
    return run
  }
  // a run whose process is alive on this host but silent too long is marked failed, yet its
  // process is not dead: it finds the run lost at its next heartbeat and stops its own work
  const plans = (
    await Promise.all(
      recovered.map(async (r) => {
        const run = await getRun(r.runId)
        return {
          id: r.runId,
          plan: new Set(run?.plan ?? []),
          alive: run !== undefined && localOwnerAlive(run),
        }
      }),
    )
  ).filter((p) => !p.alive)
  const at = now ?? Date.now()
  for (const def of assets) {
    if (!def.recover) continue
    try {
      const runIds = plans.filter((p) => p.plan.has(def.key)).map((p) => p.id)
      for (const id of (await def.leftoverRuns?.()) ?? []) {
        if (runIds.includes(id)) continue
        const run = await getRun(id)
        if (run && endedAndGone(run, at)) runIds.push(id)
      }
      if (runIds.length === 0) continue
      try {
        hooks.push({ asset: def.key, runIds, result: await def.recover(runIds) })
      } catch (error) {
        hooks.push({ asset: def.key, runIds, error: asError(error) })
      }
    } catch (error) {
      hooks.push({ asset: def.key, runIds: [], error: asError(error) })
    }
  }
  return { recovered, hooks }
}

/**
 * A run that has ended and whose process is gone: on this host, its pid is no longer alive (a pid
 * reused since only delays the sweep); on another host, it has shown no sign of life for a while.
 */
function endedAndGone(run: RunRecord, now: number): boolean {
  if (!FINISHED_RUN_STATUSES.includes(run.status)) return false
  if (run.ownerPid !== null && run.ownerHost === hostname()) return !pidAlive(run.ownerPid)
  const lastSign = Math.max(run.heartbeatAt ?? 0, run.endedAt ?? 0, run.createdAt)
  return now - lastSign > OTHER_HOST_GONE_AFTER_MS
}

/** The run's owner is a process of this host that is still alive. */
function localOwnerAlive(run: RunRecord): boolean {
  return run.ownerPid !== null && run.ownerHost === hostname() && pidAlive(run.ownerPid)
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}
