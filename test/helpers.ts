import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterEach } from 'vitest'
import { asset } from '../core/definitions.js'
import { readRecords } from './runners/records.js'

export const ROOT = resolve(import.meta.dirname, '..')
export const CLI = join(ROOT, 'dist/cli/main.js')
export const DIST_INDEX = join(ROOT, 'dist/index.js')

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0))
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 })
})

/** A fresh temp directory, removed after the test. */
export function tempDir(prefix = 'refresh-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}

/** A no-op asset (optionally returning metadata). */
export function noop(key: string, deps: string[] = [], extra: Partial<Parameters<typeof asset>[0]> = {}) {
  return asset({ key, deps, ...extra, materialize: extra.materialize ?? (() => ({ key })) })
}

export interface Exec {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface ExecOptions {
  cwd?: string
  /** Laid over this process's environment (or, with `inheritEnv: false`, the whole environment). */
  env?: NodeJS.ProcessEnv
  inheritEnv?: boolean
  timeoutMs?: number
  /** Run as this user and group (the test process must be root to switch). */
  uid?: number
  gid?: number
}

/** Runs a program as a real child process (argument array, no shell) and collects its output. */
export function exec(file: string, args: string[], options: ExecOptions = {}): Promise<Exec> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.inheritEnv === false ? options.env : { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.uid === undefined ? {} : { uid: options.uid }),
      ...(options.gid === undefined ? {} : { gid: options.gid }),
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolvePromise({ code, signal, stdout, stderr })
    })
  })
}

/** A CLI command running in the background, as a user's terminal would have it. */
export interface LiveCli {
  child: ChildProcess
  stdout(): string
  stderr(): string
  /** Resolves with stdout so far once it matches `pattern`; rejects if the command ends first. */
  waitFor(pattern: RegExp): Promise<string>
  done: Promise<Exec>
}

/**
 * Starts `refresh ARGS` as a real child process (argument array, no shell), with `env` laid over
 * this process's; `detached` puts it in a process group of its own; `killAfterMs` bounds it.
 */
export function startCli(
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; detached?: boolean; killAfterMs?: number },
): LiveCli {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    detached: options.detached === true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  const waiters: Array<{ pattern: RegExp; resolve: (s: string) => void; reject: (e: Error) => void }> = []
  const check = () => {
    for (const w of waiters.slice()) {
      if (w.pattern.test(stdout)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(stdout)
      }
    }
  }
  child.stdout!.on('data', (d) => {
    stdout += d
    check()
  })
  child.stderr!.on('data', (d) => {
    stderr += d
  })
  const timer =
    options.killAfterMs === undefined
      ? undefined
      : setTimeout(() => child.kill('SIGKILL'), options.killAfterMs)
  const done = new Promise<Exec>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      for (const w of waiters)
        w.reject(new Error(`exited (${code ?? signal}) before ${w.pattern}:\n${stdout}\n${stderr}`))
      resolve({ code, signal, stdout, stderr })
    })
  })
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    done,
    waitFor: (pattern) =>
      new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve, reject })
        check()
      }),
  }
}

/** Runs a node script or the CLI as a real child process. */
export function run(args: string[], options: ExecOptions = {}): Promise<Exec> {
  return exec(process.execPath, args, options)
}

/**
 * A temp project for the CLI: this repository's node_modules linked in (for 'zod'; the config
 * loader binds 'refresh' to this library) and the config written as `name`.
 */
export function configProject(config: string, name = 'refresh.config.ts', prefix = 'refresh-cli-'): string {
  const dir = tempDir(prefix)
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  writeFileSync(join(dir, name), config)
  return dir
}

/** Waits until `check` holds (polled every 25 ms), or fails naming `what`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 20_000,
): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/**
 * Starts an orchestrator script, waits until `count` of the workers it started are alive (each
 * recorded as a JSON file with its `pid` in `recordsDir` by a test harness), then kills the
 * orchestrator with SIGKILL, leaving its workers behind as a crash would.
 */
export async function killOnceWorkersRun(
  args: string[],
  recordsDir: string,
  count: number,
  env: NodeJS.ProcessEnv = {},
): Promise<void> {
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  })
  let stderr = ''
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const running = () =>
    existsSync(recordsDir) &&
    readRecords<{ pid: number | null }>(recordsDir).filter(({ pid }) => {
      if (pid === null) return false
      try {
        process.kill(pid, 0)
        return true
      } catch {
        return false
      }
    }).length === count
  await until(() => running() || child.exitCode !== null, `${count} running workers`)
  if (stderr.includes('Error')) throw new Error(`the orchestrator failed: ${stderr}`)
  const exited = new Promise((r) => child.on('close', r))
  child.kill('SIGKILL')
  await exited
}
