/** Where a command writes; tests and the terminal UI swap these. Only `cli/` prints. */
export interface Io {
  out(line: string): void
  err(line: string): void
  isTTY: boolean
  cwd: string
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

export function processIo(): Io {
  return {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    isTTY: process.stdout.isTTY === true,
    cwd: process.cwd(),
  }
}

/** What every command's action gets: where to write, and the exit code to set. */
export interface CliContext {
  io: Io
  code: number
}
