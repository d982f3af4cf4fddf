import type { AssetDefinition } from './definitions.js'
import type { RunStore } from './store/run-store.js'
import type { RecoveredRun } from './store/types.js'

export interface Recovery {
  recovered: RecoveredRun[]
  /** Assets whose `recover` hook ran, with what it returned or the error it threw. */
  hooks: Array<{ asset: string; runIds: string[]; result?: unknown; error?: Error }>
}

/**
 * Crash recovery as the CLI and the daemon do it at start and on an interval: runs whose process
 * died are marked failed (interrupted), then each asset with a `recover` hook is called once with
 * those of the runs that planned it, to stop the remote work they left behind.
 */
export async function recoverRuns(
  store: Pick<RunStore, 'recoverInterruptedRuns' | 'getRun'>,
  assets: readonly AssetDefinition[],
  now?: number,
): Promise<Recovery> {
  const recovered = await store.recoverInterruptedRuns(now === undefined ? {} : { now })
  const hooks: Recovery['hooks'] = []
  if (recovered.length === 0) return { recovered, hooks }
  const plans = await Promise.all(
    recovered.map(async (r) => ({ id: r.runId, plan: new Set((await store.getRun(r.runId))?.plan ?? []) })),
  )
  for (const def of assets) {
    if (!def.recover) continue
    const runIds = plans.filter((p) => p.plan.has(def.key)).map((p) => p.id)
    if (runIds.length === 0) continue
    try {
      hooks.push({ asset: def.key, runIds, result: await def.recover(runIds) })
    } catch (error) {
      hooks.push({ asset: def.key, runIds, error: error instanceof Error ? error : new Error(String(error)) })
    }
  }
  return { recovered, hooks }
}
