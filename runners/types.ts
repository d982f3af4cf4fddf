import type { JsonObject } from '../core/json.js'

/**
 * The runner contract: where a step's heavy work executes. A runner starts a unit of work,
 * reports its progress, stops it, and gives its result. The local process pool implements it
 * with one OS process per unit; an ECS runner implements the same four verbs with RunTask,
 * a polled progress object, StopTask and DescribeTasks. Assets only ever see this interface.
 */
export interface Runner extends AsyncDisposable {
  /** For logs and metadata: `local-processes`, `ecs`. */
  readonly name: string
  /** Starts a unit (or queues it until the runner has room). Never throws for the unit's own failure. */
  start(unit: WorkUnit, listener?: WorkListener): WorkHandle
  /** Stops everything still running and frees what the runner holds (also `await using`). */
  close(): Promise<void>
  /**
   * Crash recovery: stops remote work that runs left behind when their orchestrating process
   * died (ECS tasks started by them, say). Returns what it stopped. Local runners need none:
   * their workers die with their process's pipes.
   */
  recover?(runIds: readonly string[]): Promise<string[]>
}

/** One unit of work: a task of the worker entry point (`refresh worker <task>`) with its input. */
export interface WorkUnit {
  /** Stable across retries of the same unit (`shard-3`); remote runners tag their work with it. */
  id: string
  /** The worker task (`index-shard`); the worker entry point dispatches on it. */
  task: string
  /** Plain JSON, handed to the task unchanged (paths, an id range, the attempt). */
  input: JsonObject
  /** 1-based; each retry of a unit is a new start with the next attempt number. */
  attempt: number
  /**
   * The run and the asset the unit works for. Remote runners tag their work with them
   * (`startedBy` = run id), pin what a step uses once per (run, asset), and find a crashed
   * run's leftovers by them. Local runners ignore them.
   */
  runId?: string
  asset?: string
}

export interface WorkProgress {
  done: number
  total: number | null
}

export interface WorkListener {
  onProgress?(progress: WorkProgress): void
}

/** How a unit ended. `failed` covers a crash, a non-zero exit and a task that reported an error. */
export type WorkResult =
  | { status: 'succeeded'; output: JsonObject; durationMs: number }
  | {
      status: 'failed'
      error: string
      exitCode: number | null
      signal: string | null
      durationMs: number
      /** `false`: another attempt would fail the same way (access denied, a bad task definition). */
      retriable?: boolean
    }
  | { status: 'stopped'; reason: string; durationMs: number }

export interface WorkHandle {
  readonly unit: WorkUnit
  /** Where the unit runs once started (`pid 1234`, a task ARN); undefined while queued. */
  readonly where: string | undefined
  /** Settles when the unit has ended, whatever the outcome; never rejects. */
  readonly result: Promise<WorkResult>
  /** Stops the unit (kills the process, StopTask); resolves once it is gone. Idempotent. */
  stop(reason?: string): Promise<void>
}
