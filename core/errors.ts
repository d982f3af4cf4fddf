/**
 * Errors are few and named, and every error refresh throws on purpose is a `RefreshError` with a
 * stable `code` (the CLI maps codes to exit statuses in one table, `cli/exit-codes.ts`):
 * - bad input (`config`, `graph`, `selection`, `store`; `promote`, `query`, `replicas` when
 *   there is nothing to act on yet): the message names the problem and the fix; the CLI prints
 *   it as one paragraph and exits 2;
 * - outcomes that are not failures of refresh itself: `parked` (maintenance mode), `guard-busy`,
 *   `canceled`, `store-busy`, and failures of the outside world (`aws`, `integrity`);
 * - errors thrown by asset code to steer retries (`non-retriable`, `retry-after`) and the
 *   engine's own step outcomes (`step-timeout`).
 * Anything else that escapes is a bug: the CLI prints its stack and exits 1.
 *
 * Checks use a brand and `code` (or `name`) rather than `instanceof`, because a config file loaded
 * through a transpiler may hold its own copy of this module.
 */

const BRAND = Symbol.for('refresh.error')

/** Every code a `RefreshError` can carry. */
export type ErrorCode =
  | 'config'
  | 'graph'
  | 'selection'
  | 'store'
  | 'promote'
  | 'query'
  | 'replicas'
  | 'store-busy'
  | 'parked'
  | 'guard-busy'
  | 'canceled'
  | 'non-retriable'
  | 'retry-after'
  | 'step-timeout'
  | 'aws'
  | 'aws-config'
  | 'integrity'
  | 'units-failed'

/** Codes that mean "the input is wrong": the user fixes a config, a flag, a selection, a store path. */
const INPUT_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'config',
  'graph',
  'selection',
  'store',
  // nothing promoted yet, nothing to roll back to, no words to search for: what to run is named
  'promote',
  'query',
  'replicas',
  // the AWS SDK on this host has no region or no credentials: nothing was sent
  'aws-config',
])

/** Base class of every error refresh throws on purpose. `code` is stable and machine-readable. */
export class RefreshError extends Error {
  readonly code: ErrorCode
  readonly [BRAND] = true
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'RefreshError'
    this.code = code
  }
}

/** The config (file, asset definition, run config, a factory's options) is invalid. */
export class ConfigError extends RefreshError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('config', message, options)
    this.name = 'ConfigError'
  }
}

/** The asset graph is invalid: duplicate keys, missing deps, cycles. */
export class GraphError extends RefreshError {
  constructor(message: string) {
    super('graph', message)
    this.name = 'GraphError'
  }
}

/** A selection string is malformed or names assets that do not exist. */
export class SelectionError extends RefreshError {
  constructor(message: string) {
    super('selection', message)
    this.name = 'SelectionError'
  }
}

/** The store cannot be used as asked (newer schema, not a refresh store, unknown run, closed). */
export class StoreError extends RefreshError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('store', message, options)
    this.name = 'StoreError'
  }
}

/** Another writer held the store for longer than the store waits (SQLite's busy timeout, a lock wait). */
export class StoreBusyError extends RefreshError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('store-busy', message, options)
    this.name = 'StoreBusyError'
  }
}

/**
 * Maintenance mode is on: the run was not started but parked, to be replayed (once, in order)
 * when maintenance ends. Not an error of the input: the CLI exits with its own code (3).
 */
export class RunParkedError extends RefreshError {
  readonly requestId: number
  constructor(requestId: number, reason: string) {
    super(
      'parked',
      `maintenance mode is on${reason ? ` (${reason})` : ''}: the run was parked as request #${requestId} and will start when maintenance ends. Pass --force (or force: true) to run anyway.`,
    )
    this.name = 'RunParkedError'
    this.requestId = requestId
  }
}

/** A run guard of the config is full and the caller chose not to wait (`--no-wait`). */
export class GuardBusyError extends RefreshError {
  readonly runId: string
  readonly guard: string
  constructor(guard: string, runId: string) {
    super(
      'guard-busy',
      `run guard \`${guard}\` is full: run ${runId} holds it. Wait for it (drop --no-wait), or cancel it with \`refresh cancel ${runId}\`.`,
    )
    this.name = 'GuardBusyError'
    this.guard = guard
    this.runId = runId
  }
}

/** Thrown from asset code: the failure is permanent, do not retry. */
export class NonRetriableError extends RefreshError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('non-retriable', message, options)
    this.name = 'NonRetriableError'
  }
}

/** Thrown from asset code: retry, but not before `seconds` have passed (rate limits, 429s). */
export class RetryAfterError extends RefreshError {
  readonly seconds: number
  constructor(seconds: number, message?: string, options?: { cause?: unknown }) {
    super('retry-after', message ?? `retry after ${seconds} s`, options)
    this.name = 'RetryAfterError'
    this.seconds = seconds
  }
}

/** An attempt ran longer than the asset's `timeoutMs`; its signal was aborted. Retriable. */
export class StepTimeoutError extends RefreshError {
  readonly timeoutMs: number
  constructor(timeoutMs: number) {
    super('step-timeout', `attempt timed out after ${timeoutMs} ms`)
    this.name = 'StepTimeoutError'
    this.timeoutMs = timeoutMs
  }
}

/** The run was canceled while the step was running or waiting. */
export class CanceledError extends RefreshError {
  constructor(message = 'run canceled') {
    super('canceled', message)
    this.name = 'CanceledError'
  }
}

/** True for any error refresh threw on purpose (it carries a stable `code`). */
export function isRefreshError(error: unknown): error is RefreshError {
  return typeof error === 'object' && error !== null && (error as { [BRAND]?: boolean })[BRAND] === true
}

/** The code of an error refresh threw on purpose; undefined for anything else (a bug, a driver's error). */
export function errorCode(error: unknown): ErrorCode | undefined {
  return isRefreshError(error) ? error.code : undefined
}

/** True for errors that mean bad input (a config, a flag, a selection, a store path) rather than a failure. */
export function isInputError(error: unknown): error is RefreshError {
  return isRefreshError(error) && INPUT_CODES.has(error.code)
}

/** True for a stored error (`ErrorInfo`) that was bad input: a step that failed on the user's configuration. */
export function isInputErrorInfo(info: ErrorInfo | null | undefined): boolean {
  return info?.code !== undefined && INPUT_CODES.has(info.code)
}

/**
 * Not worth another attempt: a `NonRetriableError`, or an error that says so itself
 * (`retriable: false`, as an AWS call that was denied, rejected as invalid, or never sent because
 * the SDK has no region or credentials: retrying those only delays the message).
 */
export function isNonRetriable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  return error.name === 'NonRetriableError' || (error as { retriable?: unknown }).retriable === false
}

export function retryAfterSeconds(error: unknown): number | undefined {
  if (error instanceof Error && error.name === 'RetryAfterError') {
    const seconds = (error as { seconds?: unknown }).seconds
    if (typeof seconds === 'number' && Number.isFinite(seconds) && seconds >= 0) return seconds
  }
  return undefined
}

/** A serializable description of an error, as stored in steps, attempts and events. */
export interface ErrorInfo {
  name: string
  message: string
  /** The stable code of an error refresh threw on purpose (see `ErrorCode`). */
  code?: string
  stack?: string
  cause?: ErrorInfo
}

export function toErrorInfo(error: unknown, depth = 0): ErrorInfo {
  if (error instanceof Error) {
    const info: ErrorInfo = { name: error.name, message: error.message }
    if (isRefreshError(error)) info.code = error.code
    if (error.stack) info.stack = error.stack
    if (error.cause !== undefined && depth < 3) info.cause = toErrorInfo(error.cause, depth + 1)
    return info
  }
  return { name: 'Error', message: typeof error === 'string' ? error : safeString(error) }
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** "Did you mean" helper: the closest candidates by edit distance, best first. */
export function suggest(name: string, candidates: Iterable<string>, max = 3): string[] {
  const scored: Array<[string, number]> = []
  const limit = Math.min(3, Math.max(1, Math.floor(name.length / 3)))
  for (const candidate of candidates) {
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase())
    if (d <= limit || candidate.toLowerCase().includes(name.toLowerCase())) scored.push([candidate, d])
  }
  scored.sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0]))
  return scored.slice(0, max).map(([c]) => c)
}

/** Formats " Did you mean `a` or `b`?" (empty when there is nothing close). */
export function didYouMean(name: string, candidates: Iterable<string>): string {
  const close = suggest(name, candidates)
  if (close.length === 0) return ''
  return ` Did you mean ${close.map((c) => `\`${c}\``).join(' or ')}?`
}

/** Optimal string alignment distance: edits, with a swap of neighbours counted as one. */
function editDistance(a: string, b: string): number {
  if (a === b) return 0
  const rows: number[][] = [Array.from({ length: b.length + 1 }, (_, j) => j)]
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, rows[i - 2]![j - 2]! + 1)
      row[j] = d
    }
    rows.push(row)
  }
  return rows[a.length]![b.length]!
}
