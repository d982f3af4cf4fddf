import type { ErrorInfo } from '../errors.js'
import type { RunEvent } from '../events.js'
import type { JsonObject } from '../json.js'

export type RunStatus = 'queued' | 'started' | 'paused' | 'success' | 'failure' | 'canceled'
export type StepStatus = 'pending' | 'running' | 'retrying' | 'succeeded' | 'failed' | 'skipped' | 'canceled'
export type AttemptStatus = 'running' | 'succeeded' | 'failed' | 'canceled'

export const FINISHED_RUN_STATUSES: readonly RunStatus[] = ['success', 'failure', 'canceled']

export interface RunRecord {
  id: string
  status: RunStatus
  /** The selection as requested (for a re-execution: the parent's). */
  selection: string
  /** Step keys in plan order (the steps this run executes). */
  plan: string[]
  /** Steps taken from the parent's lineage instead of executing: key -> run that produced it. */
  reused: Record<string, string>
  /** Validated run config per asset key. */
  config: Record<string, unknown>
  tags: Record<string, string>
  origin: string
  runKey: string | null
  parentRunId: string | null
  rootRunId: string | null
  partitionKey: string | null
  createdAt: number
  startedAt: number | null
  endedAt: number | null
  ownerPid: number | null
  ownerHost: string | null
  heartbeatAt: number | null
  cancelRequestedAt: number | null
  error: ErrorInfo | null
}

export interface StepRecord {
  runId: string
  key: string
  index: number
  status: StepStatus
  attempts: number
  startedAt: number | null
  endedAt: number | null
  error: ErrorInfo | null
  /** For skipped steps, the failed upstream step. */
  reason: string | null
}

export interface AttemptRecord {
  runId: string
  step: string
  attempt: number
  status: AttemptStatus
  startedAt: number
  endedAt: number | null
  error: ErrorInfo | null
}

export interface MaterializationRecord {
  id: number
  asset: string
  runId: string
  attempt: number
  ts: number
  metadata: JsonObject
  partitionKey: string | null
}

/** An event as read back from the store: what was emitted, plus its sequence number. */
export type StoredEvent = RunEvent & { id: number }

export interface NewRun {
  id: string
  selection: string
  plan: string[]
  reused?: Record<string, string>
  config: Record<string, unknown>
  tags?: Record<string, string>
  origin?: string
  runKey?: string
  parentRunId?: string
  rootRunId?: string
  partitionKey?: string
  status: 'queued' | 'started'
  now: number
  owner?: { pid: number; host: string }
}

export type CreateRunResult = { created: true; run: RunRecord } | { created: false; existingRunId: string }

/** Writes accumulated by a running executor, committed together in one transaction. */
export interface WriteBatch {
  events: RunEvent[]
  steps: Array<
    Pick<StepRecord, 'runId' | 'key' | 'status' | 'attempts' | 'startedAt' | 'endedAt' | 'error' | 'reason'>
  >
  attempts: AttemptRecord[]
  materializations: Array<Omit<MaterializationRecord, 'id'>>
}

export interface RunFilter {
  status?: RunStatus | readonly RunStatus[]
  limit?: number
  /** Only runs created before this run id (pagination, newest first). */
  before?: string
}

export interface EventFilter {
  afterId?: number
  step?: string
  types?: readonly string[]
  limit?: number
}
