/** Where a command writes; tests and the terminal UI swap these. Only `cli/` prints. */
export interface Io {
  out(line: string): void
  err(line: string): void
  isTTY: boolean
  cwd: string
  /**
   * How wide a line may be: `COLUMNS` when set, else the terminal's width; undefined in a pipe,
   * where tables are not cut.
   */
  columns?: number
  /** The environment the output depends on (`NO_COLOR`, `CI`, `TERM`); default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>
}

export const EXIT = {
  ok: 0,
  /** The run failed or was canceled. */
  failed: 1,
  /** Bad input: config, selection, flags. */
  usage: 2,
  /** Maintenance mode is on: the run was parked, to start when it goes off (`--force` runs anyway). */
  parked: 3,
  interrupted: 130,
} as const

/** The reader of stdout (stderr) went away (EPIPE): what would be written there is dropped. */
const closed = { out: false, err: false }
let onOutputClosed: (() => void) | undefined

/**
 * What to do when stdout's reader goes away (`refresh run | head -3`): a run in progress cancels
 * itself cleanly, recorded as such, instead of the process dying with the run left `started`.
 * Returns a function that removes the handler.
 */
export function whenOutputCloses(handler: () => void): () => void {
  onOutputClosed = handler
  return () => {
    if (onOutputClosed === handler) onOutputClosed = undefined
  }
}

/**
 * Called by the CLI's entry point on EPIPE. Returns true when a command took it over (the
 * process goes on); false when nothing runs and the process may end.
 */
export function outputClosed(stream: 'out' | 'err'): boolean {
  if (closed[stream]) return true
  closed[stream] = true
  if (stream === 'err') return true
  const handler = onOutputClosed
  onOutputClosed = undefined
  handler?.()
  return handler !== undefined
}

export function processIo(): Io {
  const fromEnv = Number(process.env.COLUMNS)
  return {
    out: (line) => {
      if (!closed.out) process.stdout.write(`${line}\n`)
    },
    err: (line) => {
      if (!closed.err) process.stderr.write(`${line}\n`)
    },
    isTTY: process.stdout.isTTY === true,
    cwd: process.cwd(),
    columns:
      Number.isInteger(fromEnv) && fromEnv > 0
        ? fromEnv
        : process.stdout.isTTY
          ? process.stdout.columns
          : undefined,
    env: process.env,
  }
}

/** A set variable that is not `0` or `false` (how `CI=true`, `CI=1` and `CI=woodpecker` all read). */
function flag(value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value.toLowerCase() !== 'false'
}

/**
 * Whether the live view may draw: only on a terminal that can redraw (not `TERM=dumb`) and not
 * in CI (`CI` set), whose logs keep every frame a live view draws.
 */
export function canRedraw(io: Io): boolean {
  const env = io.env ?? process.env
  return io.isTTY && !flag(env.CI) && env.TERM !== 'dumb'
}

/** Colors unless `NO_COLOR` is set to anything (https://no-color.org). */
export function colorsWanted(io: Io): boolean {
  const value = (io.env ?? process.env).NO_COLOR
  return value === undefined || value === ''
}

/** What every command's action gets: where to write, and the exit code to set. */
export interface CliContext {
  io: Io
  code: number
}
