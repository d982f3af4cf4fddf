/**
 * The run launcher contract: where a daemon starts each queued run. The default starts it as a
 * local process (`refresh launch RUN_ID`); `ecsRunLauncher` (daemon/ecs-launcher.ts) starts the
 * same entry point as an ECS task. A config names one with `runLauncher`; the daemon only ever
 * talks to this interface.
 */
import type { RunRecord } from './store/types.js'

/** What a launcher is told about one queued run. */
export interface LaunchRequest {
  /** The queued run (its id, and the state that makes one launch of it distinct from another). */
  run: RunRecord
  /** The daemon's `--env NAME`, passed on to `refresh launch`. */
  environment: string | undefined
  /** The config file the daemon loaded (a local process loads the same one). */
  configFile: string
  /**
   * The store location. It may hold a password (`postgres://user:pass@…`): a launcher passes it in
   * an environment variable (`REFRESH_STORE`), never on a command line nor in an API request.
   */
  storeLocation: string
  /** Something about the launched run that the daemon should log (a task that cannot be watched). */
  onError(message: string): void
}

/** How a launched run's process (or task) ended. */
export interface LaunchExit {
  /** Its exit code; null when it was killed by a signal or never started (a task ECS could not place). */
  code: number | null
  signal: NodeJS.Signals | null
  /** The end of its standard error, or why the task stopped. */
  stderr: string
}

/** A run started by a daemon in its own process or task. */
export interface LaunchedRun {
  /** The local process id (undefined for a remote task). */
  pid: number | undefined
  /** Where it runs when not a local process: the ECS task ARN, once known. */
  readonly task?: string | undefined
  /**
   * A remote launcher's: settles with the task ARN once the task is started (undefined when it
   * could not start). A local process has its pid at once.
   */
  readonly started?: Promise<string | undefined>
  /** Settles once the process (or task) is gone, never before. */
  exited: Promise<LaunchExit>
  /**
   * Stops the run's process: SIGINT or SIGTERM to cancel gracefully, SIGKILL to stop at once. An
   * ECS task is stopped with StopTask either way (ECS sends SIGTERM, then SIGKILL after the task
   * definition's `stopTimeout`).
   */
  kill(signal: NodeJS.Signals): void
}

/** Where a daemon starts its runs. */
export interface RunLauncher {
  /** `local` or `ecs`, for messages. */
  readonly kind: string
  /**
   * Its runs execute on other hosts, so they reach the store over the network: the store must be
   * a server (Postgres), never a file nor `:memory:`.
   */
  readonly remote: boolean
  /** Starts one queued run; never throws (a failure to start settles `exited`). */
  launch(request: LaunchRequest): LaunchedRun
  /**
   * Stops what is left of runs that recovery marked interrupted (their tasks still running);
   * returns what it stopped.
   */
  recover?(runIds: readonly string[]): Promise<string[]>
  /** Frees the launcher's clients once the daemon has stopped. */
  close(): Promise<void>
}

/** Whether a value is a run launcher (what `runLauncher` in a config must be). */
export function isRunLauncher(value: unknown): value is RunLauncher {
  const v = value as Partial<RunLauncher> | null
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.kind === 'string' &&
    typeof v.remote === 'boolean' &&
    typeof v.launch === 'function' &&
    typeof v.close === 'function'
  )
}
