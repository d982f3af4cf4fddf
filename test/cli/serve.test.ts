import { type ChildProcess, spawn } from 'node:child_process'
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { CLI, run, tempDir } from '../helpers.js'

const CONFIG = `import { catalog, clean, copy, defineConfig, localProcessRunner, promote, reindex, replicas, snapshot } from 'refresh'

const dataDir = new URL('./state/', import.meta.url)
export default defineConfig({
  assets: [
    catalog({ dataDir }),
    copy({ dataDir }),
    clean({ dataDir }),
    reindex({ dataDir, shards: 3, runner: localProcessRunner({ processes: 2 }) }),
    snapshot({ dataDir }),
    replicas({ dataDir }),
    promote({ dataDir }),
  ],
  config: { catalog: { rows: 2000 }, replicas: { replicas: 1 } },
})
`

const servers: ChildProcess[] = []
afterEach(async () => {
  for (const child of servers.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const closed = new Promise((r) => child.on('close', r))
      child.kill('SIGKILL')
      await closed
    }
  }
})

/** Starts `refresh serve` and resolves with its base URL once it listens. */
function serve(args: string[], cwd: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  servers.push(child)
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    child.stderr!.on('data', (d) => {
      err += d
    })
    child.stdout!.on('data', (d) => {
      out += d
      const url = /on (http:\/\/[^\s]+) /.exec(out)?.[1]
      if (url) resolve({ child, url })
    })
    child.on('close', (code) => reject(new Error(`serve exited ${code}: ${err}`)))
  })
}

async function get(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

describe('refresh serve', () => {
  it('serves search and a deep /healthz over the promoted index and over a snapshot directory', async () => {
    const cwd = tempDir()
    writeFileSync(join(cwd, 'refresh.config.ts'), CONFIG)
    const built = await run([CLI, 'run', '--plain'], { cwd, timeoutMs: 60_000 })
    expect(built.code).toBe(0)
    const alias = JSON.parse(readFileSync(join(cwd, 'state', 'current.json'), 'utf8')) as {
      current: { snapshot: string }
    }
    const snapshot = alias.current.snapshot

    const promoted = await serve(['--port', '0'], cwd)
    expect(promoted.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const search = await get(`${promoted.url}/search?q=fox&limit=3`)
    expect(search.status).toBe(200)
    expect(search.body).toMatchObject({ snapshot, query: '"fox"' })
    expect(search.body.hits).toHaveLength(3)
    expect((search.body.hits as Array<{ title: string }>)[0]!.title).toMatch(/fox/i)
    const health = await get(`${promoted.url}/healthz`)
    expect(health.status).toBe(200)
    expect(health.body).toMatchObject({ status: 'ok', snapshot, shards: 3 })
    expect((await get(`${promoted.url}/search`)).status).toBe(400)
    expect((await get(`${promoted.url}/nope`)).status).toBe(404)

    // refresh query through the replica's HTTP API
    const viaReplica = await run([CLI, 'query', 'fox', '--limit', '2', '--replica', promoted.url], {
      cwd: tempDir(),
    })
    expect(viaReplica.code).toBe(0)
    expect(viaReplica.stdout).toMatch(
      new RegExp(`snapshot ${snapshot}.* via replica http://127\\.0\\.0\\.1:\\d+`),
    )
    expect(viaReplica.stdout).toMatch(/2 hits for "fox"/)
    const down = await run([CLI, 'query', 'fox', '--replica', 'http://127.0.0.1:1'], { cwd: tempDir() })
    expect(down.code).toBe(1)
    expect(down.stderr).toMatch(/replica http:\/\/127\.0\.0\.1:1 did not answer/)

    // the same port again: a clear error, exit 2
    const port = new URL(promoted.url).port
    const clash = await run([CLI, 'serve', '--port', port], { cwd })
    expect(clash.code).toBe(2)
    expect(clash.stderr).toMatch(/port \d+ on 127\.0\.0\.1 is in use .*pick a free one with --port/)

    // a copy of the snapshot, served by --index; then its manifest no longer matches the shards
    const copy = join(cwd, 'copy')
    cpSync(join(cwd, 'state', 'snapshots', snapshot), copy, { recursive: true })
    const fixed = await serve(['--index', copy, '--port', '0'], tempDir())
    const ok = await get(`${fixed.url}/healthz`)
    expect(ok.status).toBe(200)
    const manifestFile = join(copy, 'manifest.json')
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { documents: number }
    writeFileSync(manifestFile, JSON.stringify({ ...manifest, documents: manifest.documents + 1 }))
    const mismatch = await get(`${fixed.url}/healthz`)
    expect(mismatch.status).toBe(503)
    expect(mismatch.body.reason).toMatch(
      new RegExp(
        `the shards hold ${manifest.documents} documents but the manifest of ${snapshot} says ${manifest.documents + 1}`,
      ),
    )
    writeFileSync(manifestFile, '{ not json')
    const corrupt = await get(`${fixed.url}/healthz`)
    expect(corrupt.status).toBe(503)
    expect(corrupt.body.reason).toMatch(/manifest\.json is not valid JSON/)

    // SIGTERM: a clean exit 0
    const exited = new Promise<number | null>((r) => fixed.child.on('close', (code) => r(code)))
    fixed.child.kill('SIGTERM')
    expect(await exited).toBe(0)
  }, 90_000)

  it('refuses a directory that is not a snapshot, with the fix', async () => {
    const r = await run([CLI, 'serve', '--index', tempDir(), '--port', '0'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(
      /^refresh: --index .*has no manifest\.json; point --index at a snapshot directory/,
    )
  })
})

describe('refresh worker', () => {
  function source(dir: string): string {
    const file = join(dir, 'clean.db')
    const db = new Database(file)
    db.exec(
      'CREATE TABLE media_clean (id INTEGER PRIMARY KEY, title TEXT, creator TEXT, tags TEXT, url TEXT, license TEXT, provider TEXT, identifier TEXT)',
    )
    const insert = db.prepare('INSERT INTO media_clean VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
    for (let id = 1; id <= 50; id++) {
      insert.run(
        id,
        `red fox ${id}`,
        'ann',
        JSON.stringify([{ name: 'animal' }]),
        `https://x/${id}`,
        'by',
        'p',
        `i${id}`,
      )
    }
    db.close()
    return file
  }

  it('runs one index-shard task, reports on stdout and in its status file, exits 0', async () => {
    const dir = tempDir()
    const status = join(dir, 'status.json')
    const input = {
      source: source(dir),
      table: 'media_clean',
      lo: 1,
      hi: 31,
      output: join(dir, 's0.db'),
      shard: 0,
    }
    const r = await run([CLI, 'worker', 'index-shard', JSON.stringify(input), '--status-file', status])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const messages = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string })
    expect(messages[0]).toEqual({ type: 'progress', done: 0, total: 30 })
    expect(messages.at(-1)).toMatchObject({ type: 'result', output: { shard: 0, documents: 30 } })
    expect(JSON.parse(readFileSync(status, 'utf8'))).toMatchObject({
      state: 'succeeded',
      done: 30,
      total: 30,
      output: { documents: 30 },
    })
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([])
  })

  it('a failing task exits 1 with its error in the status file; an unknown task exits 2', async () => {
    const dir = tempDir()
    const status = join(dir, 'status.json')
    const input = {
      source: join(dir, 'missing', 'x.db'),
      table: 'media_clean',
      lo: 1,
      hi: 9,
      output: join(dir, 'o.db'),
      shard: 1,
    }
    const r = await run([CLI, 'worker', 'index-shard', JSON.stringify(input), '--status-file', status])
    expect(r.code).toBe(1)
    expect(JSON.parse(readFileSync(status, 'utf8'))).toMatchObject({
      state: 'failed',
      error: expect.stringMatching(/unable to open|does not exist/),
    })
    const unknown = await run([CLI, 'worker', 'no-such-task', '{}'])
    expect(unknown.code).toBe(2)
    expect(unknown.stdout).toMatch(/tasks: index-shard \(not no-such-task\)/)
  })
})
