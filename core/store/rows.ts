import type { ErrorInfo } from '../errors.js'
import type { RunEvent } from '../events.js'
import { type JsonObject, parseJson } from '../json.js'
import type {
  AttemptRecord,
  AutomationAssetRecord,
  AutomationCursor,
  AutomationEvaluationRecord,
  AutomationStatus,
  CheckResultRecord,
  InstigatorKind,
  InstigatorState,
  InstigatorStatus,
  Lease,
  MaterializationRecord,
  ParkedRequest,
  PartitionEvent,
  RequestOutcome,
  RunGuard,
  RunRecord,
  RunStatus,
  StepRecord,
  TickRecord,
} from './types.js'

/** A row as the driver returns it. */
export type Row = Record<string, unknown>

/** Row -> record conversions shared by the stores (same column names; JSON text columns parsed, nulls kept). */

export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`)
}

export function toRun(row: Row): RunRecord {
  return {
    id: row.id as string,
    status: row.status as RunStatus,
    selection: row.selection as string,
    plan: parseJson<string[]>(row.plan as string, []),
    reused: parseJson<Record<string, string>>(row.reused as string, {}),
    config: parseJson<Record<string, unknown>>(row.config as string, {}),
    tags: parseJson<Record<string, string>>(row.tags as string, {}),
    origin: row.origin as string,
    runKey: (row.run_key as string | null) ?? null,
    parentRunId: (row.parent_run_id as string | null) ?? null,
    rootRunId: (row.root_run_id as string | null) ?? null,
    partitionKey: (row.partition_key as string | null) ?? null,
    createdAt: row.created_at as number,
    startedAt: (row.started_at as number | null) ?? null,
    endedAt: (row.ended_at as number | null) ?? null,
    ownerPid: (row.owner_pid as number | null) ?? null,
    ownerHost: (row.owner_host as string | null) ?? null,
    heartbeatAt: (row.heartbeat_at as number | null) ?? null,
    cancelRequestedAt: (row.cancel_requested_at as number | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
    guard: (row.guard as string | null) ?? null,
    guardLimit: (row.guard_limit as number | null) ?? null,
    launchedBy: (row.launched_by as string | null) ?? null,
  }
}

export function toInstigator(row: Row): InstigatorState {
  return {
    name: row.name as string,
    kind: row.kind as InstigatorKind,
    status: row.status as InstigatorStatus,
    cursor: (row.cursor as string | null) ?? null,
    enabledAt: (row.enabled_at as number | null) ?? null,
    updatedAt: row.updated_at as number,
    lastTickAt: (row.last_tick_at as number | null) ?? null,
    lastTickId: (row.last_tick_id as number | null) ?? null,
  }
}

export function toTick(row: Row): TickRecord {
  return {
    id: row.id as number,
    instigator: row.instigator as string,
    kind: row.kind as InstigatorKind,
    tickTime: row.tick_time as number,
    startedAt: row.started_at as number,
    endedAt: (row.ended_at as number | null) ?? null,
    status: row.status as TickRecord['status'],
    runIds: parseJson<string[]>(row.run_ids as string, []),
    skipReason: (row.skip_reason as string | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
    cursor: (row.cursor as string | null) ?? null,
    repeats: (row.repeats as number | null) ?? 1,
  }
}

export function toParked(row: Row): ParkedRequest {
  return {
    id: row.id as number,
    origin: row.origin as string,
    selection: row.selection as string,
    config: parseJson<Record<string, unknown>>(row.config as string, {}),
    tags: parseJson<Record<string, string>>(row.tags as string, {}),
    runKey: (row.run_key as string | null) ?? null,
    guard: parseJson<RunGuard | null>(row.guard as string | null, null),
    parentRunId: (row.parent_run_id as string | null) ?? null,
    partitionKey: (row.partition_key as string | null) ?? null,
    createdAt: row.created_at as number,
    replayedAt: (row.replayed_at as number | null) ?? null,
    replayRunId: (row.replay_run_id as string | null) ?? null,
    replayOutcome: (row.replay_outcome as string | null) ?? null,
  }
}

export function toLease(row: Row): Lease {
  return {
    name: row.name as string,
    holder: row.holder as string,
    acquiredAt: row.acquired_at as number,
    expiresAt: row.expires_at as number,
  }
}

export function toStep(row: Row): StepRecord {
  return {
    runId: row.run_id as string,
    key: row.key as string,
    index: row.plan_index as number,
    status: row.status as StepRecord['status'],
    attempts: row.attempts as number,
    startedAt: (row.started_at as number | null) ?? null,
    endedAt: (row.ended_at as number | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
    reason: (row.reason as string | null) ?? null,
  }
}

export function toAttempt(row: Row): AttemptRecord {
  return {
    runId: row.run_id as string,
    step: row.step_key as string,
    attempt: row.attempt as number,
    status: row.status as AttemptRecord['status'],
    startedAt: row.started_at as number,
    endedAt: (row.ended_at as number | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
  }
}

export function toMaterialization(row: Row): MaterializationRecord {
  return {
    id: row.id as number,
    asset: row.asset_key as string,
    runId: row.run_id as string,
    attempt: row.attempt as number,
    ts: row.ts as number,
    metadata: parseJson<JsonObject>(row.metadata as string, {}),
    partitionKey: (row.partition_key as string | null) ?? null,
  }
}

export function toCheckResult(row: Row): CheckResultRecord {
  return {
    id: row.id as number,
    runId: row.run_id as string,
    asset: row.asset_key as string,
    check: row.check_name as string,
    partitionKey: (row.partition_key as string | null) ?? null,
    passed: Number(row.passed) === 1,
    severity: row.severity as CheckResultRecord['severity'],
    blocking: Number(row.blocking) === 1,
    ts: row.ts as number,
    metadata: parseJson<JsonObject>(row.metadata as string, {}),
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
  }
}

/**
 * An event as its row holds it: the run, time, type and step in columns, the rest in the payload.
 * (Rows written before the payload left out its columns hold them twice: the same values.)
 */
export function eventOfRow(row: {
  run_id: string
  ts: number
  type: string
  step_key: string | null
  payload: string
}): RunEvent {
  const head = { type: row.type, runId: row.run_id, ts: row.ts }
  const step = row.step_key === null ? {} : { step: row.step_key }
  return { ...head, ...step, ...(JSON.parse(row.payload) as object) } as RunEvent
}

/**
 * What an event's payload column holds: the event without its run, time and type (and its step
 * when it has one), which the row's columns hold; a third of a small event's bytes. A null step
 * stays in the payload: it tells a log line of the run from an event that has no step.
 */
export function eventPayload(e: RunEvent): string {
  const { type: _type, runId: _run, ts: _ts, ...fields } = e
  if ('step' in e && e.step !== null) delete (fields as { step?: string }).step
  return JSON.stringify(fields)
}

/** A partition event as both stores read it (`partitionEvents`). */
export function toPartitionEvent(row: {
  id: number | string
  asset: string
  partition_key: string | null
  type: string
  run_id: string
  ts: number | string
}): PartitionEvent {
  return {
    id: Number(row.id),
    asset: row.asset,
    partitionKey: row.partition_key,
    kind: row.type === 'asset:materialized' ? 'materialized' : 'failed',
    runId: row.run_id,
    ts: Number(row.ts),
  }
}

/** The automation table's global row (its status is the global switch, its state the cursor). */
export const AUTOMATION_GLOBAL = '*'

export function toAutomationAsset(row: Row): AutomationAssetRecord {
  return {
    asset: row.asset as string,
    status: row.status as AutomationStatus,
    state: (row.state as string | null) ?? null,
    tick: Number(row.tick),
    updatedAt: Number(row.updated_at),
  }
}

/** The cursor kept in the global row's state (null: no tick committed). */
export function automationCursorOf(row: Row | undefined): AutomationCursor | null {
  return parseJson<AutomationCursor | null>((row?.state as string | null | undefined) ?? null, null)
}

export function toAutomationEvaluation(row: Row): AutomationEvaluationRecord {
  return {
    id: Number(row.id),
    tick: Number(row.tick),
    asset: row.asset as string,
    evaluatedAt: Number(row.evaluated_at),
    trueCount: Number(row.true_count),
    total: Number(row.total),
    tree: row.tree as string,
    runIds: parseJson<string[]>(row.run_ids as string, []),
  }
}

/**
 * The runs an evaluation's requests got (`requests`: indexes into the tick's outcomes), in order,
 * each once: a created run, the run a key already named, the follow-up a request coalesced into.
 */
export function evaluationRunIds(outcomes: readonly RequestOutcome[], requests: readonly number[]): string[] {
  const ids = new Set<string>()
  for (const i of requests) {
    const o = outcomes[i]
    if (o === undefined)
      throw new RangeError(`an evaluation names request ${i}; the tick has ${outcomes.length}`)
    if ('runId' in o) ids.add(o.runId)
  }
  return [...ids]
}

/** The switches as `automationSwitches` returns them, from the rows whose status is not `default`. */
export function automationSwitchesOf(rows: ReadonlyArray<{ asset: string; status: AutomationStatus }>): {
  status: AutomationStatus
  assets: Record<string, AutomationStatus>
} {
  const assets: Record<string, AutomationStatus> = {}
  let status: AutomationStatus = 'default'
  for (const r of rows) {
    if (r.asset === AUTOMATION_GLOBAL) status = r.status
    else assets[r.asset] = r.status
  }
  return { status, assets }
}
