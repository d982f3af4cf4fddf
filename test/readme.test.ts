import { type ChildProcess, spawn } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'
import { CLI, type Exec, exec, ROOT, run, tempDir } from './helpers.js'
import { startPostgres } from './postgres.js'

/**
 * Every code block of the README, run as written: TypeScript blocks are type-checked against the
 * built package (dist/index.d.ts, strict) and executed (configs through the CLI, the test file
 * with node:test); shell blocks run line by line against a project holding the default
 * refresh.config.ts (`npx refresh ...` is the bin, spawned with an argument array; long-running
 * commands are started, used and stopped with SIGTERM); the systemd unit's ExecStart is started and
 * stopped the way systemd does. Text blocks are sample output. What cannot run here (the quick
 * start, which is this very setup, and the AWS block, which needs an AWS account) is listed, and a
 * block of a kind the test does not know fails it.
 */

interface Block {
  lang: string
  code: string
  /** 1-based line of the opening fence. */
  line: number
  heading: string
}

function blocksOf(markdown: string): Block[] {
  const blocks: Block[] = []
  const lines = markdown.split('\n')
  let heading = ''
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!
    if (/^#{1,6} /.test(l)) heading = l.replace(/^#+ /, '')
    const open = /^```(\S*)\s*$/.exec(l)
    if (!open) continue
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!)
    blocks.push({ lang: open[1]!, code: `${body.join('\n')}\n`, line: start + 1, heading })
  }
  return blocks
}

const README = readFileSync(join(ROOT, 'README.md'), 'utf8')
const BLOCKS = blocksOf(README)

/** A project folder whose node_modules holds this package as `refresh` (built) and its dependencies. */
function project(): string {
  const dir = tempDir('refresh-readme-')
  const modules = join(dir, 'node_modules')
  mkdirSync(join(modules, '@types'), { recursive: true })
  symlinkSync(ROOT, join(modules, 'refresh'), 'dir')
  symlinkSync(join(ROOT, 'node_modules/zod'), join(modules, 'zod'), 'dir')
  symlinkSync(join(ROOT, 'node_modules/@types/node'), join(modules, '@types/node'), 'dir')
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'readme-example', type: 'module', private: true }),
  )
  return dir
}

/** The file a TypeScript block says it is (its first line, `// refresh.config.ts`). */
function fileOf(block: Block): string {
  const name = /^\/\/ (\S+\.ts)\b/.exec(block.code)?.[1]
  if (!name) throw new Error(`README line ${block.line}: a TypeScript block must start with \`// <file>.ts\``)
  return name
}

function cli(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Exec> {
  return run([CLI, ...args], { cwd, env: { NO_COLOR: '1', REFRESH_CONFIG: '', ...env }, timeoutMs: 120_000 })
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  await new Promise((r) => server.close(r))
  return port
}

/** The words of a shell line: quotes group, `#` outside quotes starts a comment. No expansion. */
function words(line: string): string[] {
  const out: string[] = []
  let word: string | null = null
  let quote: string | null = null
  for (const c of line) {
    if (quote) {
      if (c === quote) quote = null
      else word += c
    } else if (c === '"' || c === "'") {
      quote = c
      word ??= ''
    } else if (c === '#' && word === null) {
      break
    } else if (/\s/.test(c)) {
      if (word !== null) out.push(word)
      word = null
    } else {
      word = (word ?? '') + c
    }
  }
  if (quote) throw new Error(`unbalanced quote in: ${line}`)
  if (word !== null) out.push(word)
  return out
}

interface Background {
  child: ChildProcess
  output: () => string
  exited: Promise<number | null>
}

function background(argv: string[], cwd: string, env: NodeJS.ProcessEnv): Background {
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let text = ''
  child.stdout!.on('data', (d) => {
    text += d
  })
  child.stderr!.on('data', (d) => {
    text += d
  })
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)))
  return { child, output: () => text, exited }
}

async function waitFor(bg: Background, pattern: RegExp, what: string): Promise<void> {
  const end = Date.now() + 30_000
  while (!pattern.test(bg.output())) {
    if (bg.child.exitCode !== null || Date.now() > end)
      throw new Error(`${what} did not start:\n${bg.output()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * Runs a shell block line by line in `cwd`: `export A=b` sets variables, `npx refresh ...` runs the
 * bin, `curl ...` runs curl; `serve` and `daemon` stay in the background until the block ends,
 * then get SIGTERM and must exit 0. `ports` maps a port the block names to a free one.
 */
async function runShell(block: Block, cwd: string, ports: Map<string, string>): Promise<void> {
  const env: NodeJS.ProcessEnv = { NO_COLOR: '1', REFRESH_CONFIG: '' }
  const running: Background[] = []
  try {
    for (const line of block.code.split('\n')) {
      let argv = words(line)
      if (argv.length === 0) continue
      argv = argv.map((w) => [...ports].reduce((text, [from, to]) => text.replaceAll(from, to), w))
      // "$VAR" as a shell expands it, from what the block exported
      argv = argv.map((w) => w.replace(/\$([A-Z_][A-Z0-9_]*)/g, (_, name: string) => env[name] ?? ''))
      const where = `README line ${block.line}: ${line.trim()}`
      if (argv[0] === 'export') {
        for (const assignment of argv.slice(1)) {
          const eq = assignment.indexOf('=')
          env[assignment.slice(0, eq)] = assignment.slice(eq + 1)
        }
        continue
      }
      if (argv[0] === 'curl') {
        const r = await exec('curl', ['--silent', '--show-error', '--max-time', '20', ...argv.slice(1)], {
          cwd,
        })
        expect(r.code, `${where}\n${r.stderr}`).toBe(0)
        expect(r.stdout, where).not.toBe('')
        if (argv.includes('-i')) expect(r.stdout.split('\n')[0], where).toMatch(/^HTTP\/1\.1 200/)
        continue
      }
      expect(argv.slice(0, 2), `${where}: only \`npx refresh\`, curl and export run here`).toEqual([
        'npx',
        'refresh',
      ])
      const args = argv.slice(2)
      if (args[0] === 'serve' || args[0] === 'daemon') {
        const bg = background([process.execPath, CLI, ...args], cwd, env)
        running.push(bg)
        await waitFor(bg, args[0] === 'serve' ? /^serving /m : /^refresh daemon on /m, where)
        continue
      }
      const r = await cli(cwd, args, env)
      expect(r.code, `${where}\n${r.stdout}\n${r.stderr}`).toBe(0)
    }
  } finally {
    for (const bg of running) {
      bg.child.kill('SIGTERM')
      expect(await bg.exited, bg.output()).toBe(0)
    }
  }
}

/** What each config block of the README is run with, by the heading it is under. */
async function runConfig(block: Block, dir: string): Promise<void> {
  const ok = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = await cli(dir, args, env)
    expect(r.code, `README line ${block.line}: refresh ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(0)
    return r
  }
  if (block.heading === 'Declaring assets') {
    await ok(['validate'])
    const r = await ok(['run', '--plain'])
    expect(r.stdout).toContain('copying 100000 rows, 1000 at a time')
    await ok(['run', 'copy', '--plain', '--set', 'copy.batchSize=10'])
  } else if (block.heading === 'The refresh building blocks') {
    await ok(['validate'])
    await ok(['run', '--dry-run'])
    // as written, with fewer catalog rows (a million take a while)
    await ok(['run', '--plain', '--set', 'catalog.rows=3000'])
    expect(existsSync(join(dir, '.refresh/data/current.json'))).toBe(true)
  } else if (block.heading === 'Partitions and backfills') {
    await ok(['validate'])
    const first = await ok(['run', '--partition', '2026-11-01', '--plain'])
    expect(first.stdout).toMatch(/started: partition 2026-11-01/)
    expect(first.stdout).toMatch(/running_total succeeded .* total=1000/)
    const status = await ok(['partitions', 'running_total'])
    expect(status.stdout).toMatch(/materialized\s+1\s+2026-11-01/)
    const backfill = await ok([
      'backfill',
      'daily_events+',
      '--from',
      '2026-11-02',
      '--to',
      '2026-11-05',
      '--json',
    ])
    expect(JSON.parse(backfill.stdout)).toMatchObject({ status: 'requested', total: 4 })
    await ok(['backfills'])
  } else if (block.heading === 'Asset checks') {
    await ok(['validate'])
    const small = ['--set', 'catalog.rows=3000', '--set', 'replicas.replicas=1']
    const first = await ok(['run', '--plain', ...small])
    expect(first.stdout).toMatch(/clean\s+check kept_most_rows passed/)
    const alias = readFileSync(join(dir, '.refresh/data/current.json'), 'utf8')
    const stopped = await cli(dir, [
      'run',
      '--plain',
      ...small,
      '--set',
      'checks.clean.kept_most_rows.minKeptPercent=101',
    ])
    expect(stopped.code, stopped.stdout).toBe(1)
    expect(stopped.stdout).toMatch(/promote\s+skipped: check clean:kept_most_rows failed/)
    expect(readFileSync(join(dir, '.refresh/data/current.json'), 'utf8')).toBe(alias)
    const checks = await ok(['checks', 'clean'])
    expect(checks.stdout).toMatch(/clean\s+kept_most_rows\s+FAILED/)
  } else if (block.heading === 'Sensors, schedules and the daemon') {
    await ok(['validate'])
    await ok(['sensors'])
    await ok(['schedules'])
    mkdirSync(join(dir, 'exports'))
    writeFileSync(join(dir, 'exports', '2026-11-23.ndjson'), '')
    const tick = await ok(['sensors', 'tick', 'new_exports'])
    expect(tick.stdout).toContain('sensor new_exports: created run')
  } else if (block.heading === 'Declarative automation') {
    await ok(['validate'])
    await ok(['run', 'events', '--partition', '2026-11-20', '--plain'])
    const daemon = background([process.execPath, CLI, 'daemon', '--automation-interval', '1s'], dir, {
      NO_COLOR: '1',
      REFRESH_CONFIG: '',
    })
    try {
      await waitFor(daemon, /daily_summary \[2026-11-20\] created run/, 'the eager request of daily_summary')
      await waitFor(daemon, /ended success/, 'the daily_summary run')
    } finally {
      daemon.child.kill('SIGTERM')
      expect(await daemon.exited, daemon.output()).toBe(0)
    }
    const why = await ok(['automation', 'daily_summary', '--limit', '5'])
    expect(why.stdout).toContain('daily_summary: eager(), on')
    expect(why.stdout).toMatch(/true for 1 of \d+ partitions: requested \w+/)
    expect(why.stdout).toMatch(/1\/\d+ anyDepsUpdated\(\) {2}2026-11-20/)
    const all = await ok(['automation'])
    expect(all.stdout).toMatch(
      /nightly_report\s+onCron\('0 3 \* \* \*', \{ timezone: 'Europe\/Paris' \}\)\s+on/,
    )
  } else if (block.heading === 'Runs as ECS tasks') {
    await ok(['validate', '--env', 'aws'])
    // a store file is refused before any AWS call: the tasks could not reach it
    const daemon = await cli(dir, ['daemon', '--env', 'aws'])
    expect(daemon.code, daemon.stderr).toBe(2)
    expect(daemon.stderr).toMatch(/cannot reach the store file .*a Postgres URL/)
  } else if (block.heading === 'Operating refresh') {
    // the alerts block: SLACK_WEBHOOK_URL is the reader's
    await ok(['validate'], { SLACK_WEBHOOK_URL: 'https://hooks.example.com/services/T000/B000/XXXX' })
  } else {
    throw new Error(
      `README line ${block.line}: a config block under "${block.heading}" the test does not run`,
    )
  }
}

describe('the README', () => {
  it('has no block the test does not know how to run', () => {
    const kinds = BLOCKS.map((b) => b.lang)
    for (const kind of kinds) expect(['ts', 'sh', 'ini', 'text']).toContain(kind)
    // the quick start comes first, as is
    expect(BLOCKS[0]!.code).toContain('npm install && npx refresh run')
    expect(BLOCKS[0]!.code).toContain('npm install && npm test')
  })

  it('links only to files a clone has', () => {
    // links, and files named in code spans (`docs/aws.md`)
    const targets = [
      ...[...README.matchAll(/\]\(([^)#]+)(#[^)]*)?\)/g)].map((m) => m[1]!),
      ...[...README.matchAll(/`([^`\s]+\.(?:md|json|ts))`/g)]
        .map((m) => m[1]!)
        .filter((t) => t.includes('/') || /^[A-Z]/.test(t)),
    ]
    expect(targets).toContain('docs/aws.md')
    for (const target of targets) {
      if (/^[a-z]+:/.test(target!)) continue
      const file = resolve(ROOT, target!)
      expect(file.startsWith(ROOT), target).toBe(true)
      expect(existsSync(file), target).toBe(true)
    }
    for (const [, anchor] of README.matchAll(/\]\(#([^)]+)\)/g)) {
      const headings = [...README.matchAll(/^#+ (.+)$/gm)].map((m) =>
        m[1]!
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, '')
          .replace(/ /g, '-'),
      )
      expect(headings, anchor).toContain(anchor)
    }
  })

  it('TypeScript blocks type-check against the built package', async () => {
    const dir = project()
    const files: string[] = []
    BLOCKS.filter((b) => b.lang === 'ts').forEach((b, i) => {
      const file = join(dir, `block-${i}`, fileOf(b))
      mkdirSync(dirname(file), { recursive: true })
      writeFileSync(file, b.code)
      files.push(file)
    })
    expect(files.length).toBeGreaterThanOrEqual(5)
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: 'ES2023',
          lib: ['ES2023', 'ESNext.Disposable'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: ['node'],
          noEmit: true,
          skipLibCheck: true,
        },
        files,
      }),
    )
    const r = await run([join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], {
      cwd: dir,
      timeoutMs: 120_000,
    })
    expect(r.stdout + r.stderr).toBe('')
    expect(r.code).toBe(0)
  }, 150_000)

  it('config blocks validate and run; the test file passes under node:test', async () => {
    const root = project()
    let ran = 0
    for (const [i, block] of BLOCKS.entries()) {
      if (block.lang !== 'ts') continue
      const dir = join(root, `block-${i}`)
      mkdirSync(dir)
      const name = fileOf(block)
      if (name === 'refresh.config.ts') {
        writeFileSync(join(dir, name), block.code)
        await runConfig(block, dir)
      } else if (name.endsWith('.test.ts')) {
        const js = ts.transpileModule(block.code, {
          compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
        }).outputText
        const file = join(dir, name.replace(/\.ts$/, '.mjs'))
        writeFileSync(file, js)
        const r = await run([file], { cwd: dir, timeoutMs: 120_000 })
        expect(r.code, `README line ${block.line}\n${r.stdout}\n${r.stderr}`).toBe(0)
        expect(r.stdout).toMatch(/^# pass 2$/m)
        expect(r.stdout).toMatch(/^# fail 0$/m)
      } else {
        throw new Error(`README line ${block.line}: a TypeScript block (${name}) the test does not run`)
      }
      ran++
    }
    expect(ran).toBe(BLOCKS.filter((b) => b.lang === 'ts').length)
  }, 300_000)

  it('shell blocks run as written against the default config; the systemd unit starts the daemon and stops it with SIGTERM', async () => {
    const dir = project()
    copyFileSync(join(ROOT, 'refresh.config.ts'), join(dir, 'refresh.config.ts'))
    const shells = BLOCKS.filter((b) => b.lang === 'sh')
    const notRun = new Map<Block, string>([
      [shells[0]!, 'the quick start: installing is this very setup'],
      ...shells
        .filter((b) => b.code.includes('--env aws'))
        .map(
          (b) =>
            [b, 'needs an AWS account (docs/aws.md; test/cli/aws-e2e.test.ts runs it on stand-ins)'] as [
              Block,
              string,
            ],
        ),
      ...shells
        .filter((b) => b.code.includes('--env postgres'))
        .map(
          (b) =>
            [
              b,
              "needs the user's upstream and API databases (test/cli/postgres-env.test.ts runs it on two)",
            ] as [Block, string],
        ),
    ])
    expect([...notRun.keys()].map((b) => b.heading)).toEqual([
      'refresh',
      'AWS environment',
      'Postgres upstream and API database',
    ])
    // the Postgres block runs against a real server: its URL's user, password, host and database
    // become the test server's
    const postgres = await startPostgres()
    const server = new URL(postgres.url)
    const ports = new Map([
      ['8080', String(await freePort())],
      [
        'refresh:PASSWORD@db.internal:5432/refresh',
        `${server.username}:${server.password}@${server.host}${server.pathname}`,
      ],
    ])
    try {
      for (const block of shells) {
        if (notRun.has(block)) continue
        await runShell(block, dir, ports)
      }
    } finally {
      await postgres.stop()
    }

    const [unit] = BLOCKS.filter((b) => b.lang === 'ini')
    expect(unit).toBeDefined()
    const setting = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(unit!.code)?.[1]
    const exec = words(setting('ExecStart')!)
    // the package's bin itself (what package.json names), never npx
    const bin = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: { refresh: string } })
      .bin.refresh
    expect(exec[0]).toMatch(/\/node$/)
    expect(exec[1]!.endsWith(`node_modules/refresh/${bin.replace(/^\.\//, '')}`)).toBe(true)
    expect(exec[2]).toBe('daemon')
    expect(setting('KillSignal')).toBe('SIGTERM')
    const grace = Number(exec[exec.indexOf('--grace-seconds') + 1])
    expect(Number(setting('TimeoutStopSec'))).toBeGreaterThan(grace)
    // run as systemd does, in the folder of the config, with this machine's node and package path
    const http = String(await freePort())
    const args = exec.slice(2).map((w, i, all) => (all[i - 1] === '--http' ? http : w))
    const daemon = background([process.execPath, join(dir, 'node_modules/refresh', bin), ...args], dir, {
      NO_COLOR: '1',
      REFRESH_CONFIG: '',
    })
    await waitFor(daemon, /^refresh daemon on /m, 'the daemon of the unit')
    daemon.child.kill('SIGTERM')
    expect(await daemon.exited, daemon.output()).toBe(0)
  }, 300_000)
})
