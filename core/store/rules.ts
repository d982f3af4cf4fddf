/**
 * The decisions both stores make the same way, as pure functions over what a store read: a run
 * request under its guard, a tick's outcome, whether a tick folds into the one before, a parked
 * replay's record, the request that resumes a drained run. Each store keeps only its SQL and its
 * transactions.
 */
import type {
  CommittedTick,
  NewRun,
  NewTick,
  ReplayOutcome,
  RunGuard,
  RunRecord,
  RunRequest,
  RunRequestSpec,
  TickRecord,
} from './types.js'

/**
 * What a request under a guard comes to, given the guard's runs in flight and its oldest queued
 * ones. A coalescing request folds only into a queued follow-up of its own partition
 * (`queuedSamePartition`, the oldest first): a follow-up of another partition would not build it.
 */
export type GuardDecision =
  | { kind: 'coalesce'; runId: string }
  | { kind: 'skip'; reason: string; blockingRunId: string | null }
  | { kind: 'create' }

export function guardDecision(
  guard: RunGuard,
  inFlight: readonly string[],
  queued: readonly string[],
  queuedSamePartition: readonly string[] = queued,
): GuardDecision {
  // the pending follow-up has not started: it will see whatever this request was for
  if (guard.onConflict === 'coalesce' && queuedSamePartition.length > 0)
    return { kind: 'coalesce', runId: queuedSamePartition[0]! }
  if (guard.onConflict === 'skip' && inFlight.length + queued.length >= guard.concurrency) {
    const blocking = inFlight[0] ?? queued[0] ?? null
    return {
      kind: 'skip',
      reason: `guard \`${guard.key}\` is full (${guard.concurrency} at a time; run ${blocking} is in flight)`,
      blockingRunId: blocking,
    }
  }
  return { kind: 'create' }
}

/** The queued run a request becomes (its parent, when it re-executes one, already read). */
export function queuedRun(
  r: RunRequest,
  parent: RunRecord | undefined,
): NewRun & { guard?: string; guardLimit?: number } {
  return {
    id: r.id,
    status: 'queued',
    parentRunId: parent?.id,
    rootRunId: parent ? (parent.rootRunId ?? parent.id) : undefined,
    reused: r.reused,
    selection: r.selection,
    plan: r.plan,
    config: r.config,
    tags: r.tags,
    origin: r.origin,
    runKey: r.runKey,
    // a re-execution builds its parent's partition
    partitionKey: r.partitionKey ?? parent?.partitionKey ?? undefined,
    now: r.now,
    guard: r.guard?.key,
    guardLimit: r.guard?.concurrency,
    holds: r.holds,
  }
}

/**
 * A tick's status once its requests are decided: one whose every request was a repeated key or
 * refused by a guard launched nothing, and reads as skipped with the reasons.
 */
export function settleTick(
  tick: NewTick,
  outcomes: CommittedTick['outcomes'],
): { status: TickRecord['status']; skipReason: string | null; runIds: string[] } {
  const runIds = [...new Set(outcomes.flatMap((o) => ('runId' in o ? [o.runId] : [])))]
  if (outcomes.length > 0 && outcomes.every((o) => o.outcome === 'duplicate' || o.outcome === 'skipped')) {
    const skipReason = outcomes
      .map((o, i) =>
        o.outcome === 'duplicate'
          ? `run key ${tick.requests![i]!.runKey} already used by run ${o.runId}`
          : o.reason,
      )
      .join('; ')
    return { status: 'skipped', skipReason, runIds }
  }
  return { status: tick.status, skipReason: tick.skipReason ?? null, runIds }
}

/** The same skip again as the instigator's previous tick: folded into that row, not a row a second forever. */
export function foldsInto(
  previous: TickRecord | undefined,
  tick: { status: TickRecord['status']; skipReason: string | null; cursor: string | null; runIds: string[] },
): boolean {
  return (
    tick.status === 'skipped' &&
    previous?.status === 'skipped' &&
    previous.skipReason === tick.skipReason &&
    previous.cursor === tick.cursor &&
    previous.runIds.length === 0 &&
    tick.runIds.length === 0
  )
}

/** What a replayed parked request records: the run it became, and its outcome in words. */
export function replayRecord(outcome: ReplayOutcome): { runId: string | null; text: string } {
  return {
    runId: 'runId' in outcome ? outcome.runId : null,
    text:
      outcome.outcome === 'failed' || outcome.outcome === 'skipped'
        ? `${outcome.outcome}: ${outcome.reason}`
        : outcome.outcome,
  }
}

/** The request that resumes a run maintenance drained: a re-execution from failure, under its guard. */
export function resumeRequest(run: RunRecord, now: number): RunRequestSpec & { now: number } {
  return {
    origin: run.origin,
    selection: run.selection,
    config: run.config,
    tags: run.tags,
    parentRunId: run.id,
    partitionKey: run.partitionKey ?? undefined,
    guard:
      run.guard !== null && run.guardLimit !== null
        ? { key: run.guard, concurrency: run.guardLimit, onConflict: 'queue' }
        : undefined,
    now,
  }
}
