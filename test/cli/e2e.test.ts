import { spawn } from 'node:child_process'
import { existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { packagesIn } from '../../bench/loaded-packages.js'
import { CLI, type Exec, type LiveCli, ROOT, run, startCli, tempDir } from '../helpers.js'

/**
 * The real CLI (dist/cli/main.js) as a child process, on a temp directory with its own config
 * and store. Configs import from 'refresh' (the loader binds it to this library) and from 'zod'
 * (node_modules is linked into the temp directory).
 */
function project(config: string): string {
  const dir = tempDir('refresh-cli-')
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  writeFileSync(join(dir, 'refresh.config.ts'), config)
  return dir
}

function cli(dir: string, ...args: string[]): Promise<Exec> {
  return run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1' } })
}

const HEADER = `import { asset, defineConfig, NonRetriableError } from 'refresh'
import { existsSync } from 'node:fs'
import { z } from 'zod'
const abortable = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason) }, { once: true })
  })
`

/** alpha -> beta -> gamma, alpha -> delta; beta fails while a `fail` file exists beside the config. */
const CHAIN = `${HEADER}
const alpha = asset({ key: 'alpha', group: 'ingest', config: z.object({ rows: z.number().int().default(3) }),
  materialize: (ctx) => { ctx.progress(ctx.config.rows, ctx.config.rows); return { rows: ctx.config.rows } } })
const beta = asset({ key: 'beta', deps: ['alpha'], async materialize(ctx) {
  ctx.log('beta is working')
  if (existsSync(new URL('./fail', import.meta.url))) throw new NonRetriableError('beta: the fail file exists\\nsecond line')
  return { doubled: (ctx.upstream.alpha?.rows as number) * 2 }
} })
const gamma = asset({ key: 'gamma', deps: ['beta'], materialize: () => ({ ok: true }) })
const delta = asset({ key: 'delta', deps: ['alpha'], materialize: () => ({}) })
export default defineConfig({ assets: [alpha, beta, gamma, delta] })
`

/** `slow` waits 30 s (honouring its abort signal); `stubborn` waits 30 s ignoring it. */
const SLOW = `${HEADER}
const first = asset({ key: 'first', materialize: () => ({}) })
const slow = asset({ key: 'slow', deps: ['first'], materialize: (ctx) => abortable(30_000, ctx.signal) })
const stubborn = asset({ key: 'stubborn', deps: ['first'], materialize: () => new Promise((r) => setTimeout(r, 30_000)) })
const after = asset({ key: 'after', deps: ['slow'], materialize: () => ({}) })
export default defineConfig({ assets: [first, slow, stubborn, after] })
`

function start(dir: string, ...args: string[]): LiveCli {
  return startCli(args, { cwd: dir, env: { NO_COLOR: '1' }, killAfterMs: 25_000 })
}

function runIdIn(text: string): string {
  const id = /run (\w{18}) started/.exec(text)?.[1]
  if (!id) throw new Error(`no run id in:\n${text}`)
  return id
}

/** A run and its steps as the store holds them, read through `refresh show --json`. */
async function stored(dir: string, id: string) {
  const r = await cli(dir, 'show', id, '--json')
  expect(r.code).toBe(0)
  return JSON.parse(r.stdout) as { run: { status: string }; steps: Array<{ key: string; status: string }> }
}

describe('refresh CLI end to end', () => {
  it('runs every asset, then lists, shows, logs, and describes them', async () => {
    const dir = project(CHAIN)
    const r = await cli(dir, 'run', '--plain')
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const id = runIdIn(r.stdout)
    expect(r.stdout).toMatch(/^\d\d:\d\d:\d\d\.\d{3} run \w+ started: 4 steps \(\*\)$/m)
    expect(r.stdout).toMatch(/beta\s+succeeded in \d+ ms {2}doubled=6/)
    expect(r.stdout).toMatch(new RegExp(`run ${id} success in .*: 4 succeeded`))

    const runs = await cli(dir, 'runs')
    expect(runs.code).toBe(0)
    expect(runs.stdout.split('\n')[0]).toMatch(/^ID\s+STATUS\s+SELECTION\s+STARTED\s+DURATION\s+FAILED STEP$/)
    expect(runs.stdout).toMatch(
      new RegExp(`${id}\\s+success\\s+\\*\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\s+\\d+ ms`),
    )

    const show = await cli(dir, 'show', id.slice(0, 8))
    expect(show.code).toBe(0)
    expect(show.stdout).toContain(`run ${id} · success · *`)
    expect(show.stdout).toMatch(/beta\s+succeeded\s+\+\d+ ms\s+\d+ ms\s+█+\s*1\s+doubled=6/)

    const logs = await cli(dir, 'logs', id, '--step', 'beta')
    expect(logs.code).toBe(0)
    expect(logs.stdout).toMatch(/beta\s+beta is working/)
    expect(logs.stdout).not.toContain('alpha')

    const assets = await cli(dir, 'assets')
    expect(assets.code).toBe(0)
    expect(assets.stdout).toMatch(new RegExp(`alpha\\s+ingest\\s+-\\s+.* ago\\s+${id}\\s+rows=3`))
    expect(assets.stdout).toMatch(/gamma\s+default\s+beta\s/)

    const dot = await cli(dir, 'graph', '--format', 'dot')
    expect(dot.stdout).toContain('"alpha" -> "beta";')
    const mermaid = await cli(dir, 'graph', '--format', 'mermaid')
    expect(mermaid.stdout).toContain('n0 --> n1')
    const text = await cli(dir, 'graph')
    expect(text.stdout).toMatch(/gamma\s+← beta/)

    const valid = await cli(dir, 'validate')
    expect(valid.code).toBe(0)
    expect(valid.stdout).toContain('refresh.config.ts is valid.')
  })

  it('--json writes one parseable event per line, from run:start to run:end', async () => {
    const dir = project(CHAIN)
    const r = await cli(dir, 'run', 'alpha+1', '--json')
    expect(r.code).toBe(0)
    const events = r.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { type: string; step?: string; steps?: string[] })
    expect(events[0]!.type).toBe('run:start')
    expect(events[0]!.steps).toEqual(['alpha', 'beta', 'delta'])
    expect(events.at(-1)!.type).toBe('run:end')
    expect(events.filter((e) => e.type === 'step:success').map((e) => e.step)).toHaveLength(3)
  })

  it('a failed run exits 1 and names the retry command; `retry` re-executes only what failed', async () => {
    const dir = project(CHAIN)
    writeFileSync(join(dir, 'fail'), '')
    const failed = await cli(dir, 'run', '--plain')
    expect(failed.code).toBe(1)
    const id = runIdIn(failed.stdout)
    expect(failed.stdout).toMatch(
      /beta\s+failed after 1 attempt: NonRetriableError: beta: the fail file exists$/m,
    )
    expect(failed.stdout).toMatch(/gamma\s+skipped: upstream beta failed/)
    expect(failed.stdout).toContain(`refresh retry ${id}`)

    const runs = await cli(dir, 'runs', '--status', 'failure')
    expect(runs.stdout).toMatch(new RegExp(`${id}\\s+failure\\s+.*\\s+beta$`, 'm'))

    rmSync(join(dir, 'fail'))
    const retried = await cli(dir, 'retry', id.slice(0, 10), '--plain')
    expect(retried.stderr).toBe('')
    expect(retried.code).toBe(0)
    expect(retried.stdout).toContain(`re-executing ${id} from failure, 2 steps (*); reusing alpha, delta`)
    expect(retried.stdout).not.toMatch(/alpha\s+started/)

    // a succeeded run has nothing to re-execute: bad input, exit 2
    const again = await cli(dir, 'retry', runIdIn(retried.stdout))
    expect(again.code).toBe(2)
    expect(again.stderr).toContain('there is nothing to re-execute')
  })

  it('bad config exits 2 with the zod path in one paragraph, no stack', async () => {
    const wrongType = project(
      CHAIN.replace(
        'assets: [alpha, beta, gamma, delta] }',
        `assets: [alpha, beta, gamma, delta], config: { alpha: { rows: 'many' } } }`,
      ),
    )
    const r1 = await cli(wrongType, 'run')
    expect(r1.code).toBe(2)
    expect(r1.stderr).toBe(
      'refresh: config for asset `alpha` is invalid: rows: Invalid input: expected number, received string\n',
    )

    const badTop = project(
      CHAIN.replace(
        'assets: [alpha, beta, gamma, delta] }',
        'assets: [alpha, beta, gamma, delta], concurrency: 0 }',
      ),
    )
    const r2 = await cli(badTop, 'validate')
    expect(r2.code).toBe(2)
    expect(r2.stderr).toMatch(
      /refresh\.config\.ts is invalid: concurrency: Too small: expected number to be >=1\n$/,
    )
    expect(r2.stderr).not.toContain('    at ')

    const dir = project(CHAIN)
    const r3 = await cli(dir, 'run', '--set', 'alpha.rows=lots')
    expect(r3.code).toBe(2)
    expect(r3.stderr).toBe('refresh: --set alpha.rows=lots: `alpha.rows` expects a number, not `lots`.\n')
    const r4 = await cli(dir, 'run', '--set', 'alpha.rows=7', '--plain')
    expect(r4.code).toBe(0)
    expect(r4.stdout).toMatch(/alpha\s+succeeded in .* rows=7/)
  })

  it('an unknown asset exits 2 with a suggestion; a cycle exits 2 with its path', async () => {
    const dir = project(CHAIN)
    const unknown = await cli(dir, 'run', 'betta+')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain(
      'the selection names `betta`, which is not an asset. Did you mean `beta`?',
    )
    expect(existsSync(join(dir, '.refresh'))).toBe(false)

    const cycle = project(`${HEADER}
const a = asset({ key: 'a', deps: ['c'], materialize: () => ({}) })
const b = asset({ key: 'b', deps: ['a'], materialize: () => ({}) })
const c = asset({ key: 'c', deps: ['b'], materialize: () => ({}) })
export default defineConfig({ assets: [a, b, c] })
`)
    for (const command of ['run', 'validate', 'graph']) {
      const r = await cli(cycle, command)
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/the asset graph has a cycle: (\w) -> \w -> \w -> \1/)
    }
  })

  it('--dry-run prints the plan with the typed run config and runs nothing', async () => {
    const dir = project(CHAIN)
    const r = await cli(dir, 'run', 'beta+', '--set', 'alpha.rows=9', '--dry-run')
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(
      'plan: 2 steps (beta+); nothing is run (--dry-run)\n  1. beta   after alpha\n  2. gamma  after beta\n',
    )
    const withConfig = await cli(dir, 'run', 'alpha', '--set', 'alpha.rows=9', '--dry-run')
    expect(withConfig.stdout).toContain('1. alpha  no deps  config {"rows":9}')
    expect(existsSync(join(dir, '.refresh'))).toBe(false)
  })

  it('`cancel` from a second process stops the run, which ends canceled; `logs --follow` sees the end', async () => {
    const dir = project(SLOW)
    const live = start(dir, 'run', 'slow+', '--plain')
    const id = runIdIn(await live.waitFor(/slow\s+started/))
    const follow = start(dir, 'logs', id, '--follow')
    await follow.waitFor(/slow\s+started/)

    const cancel = await cli(dir, 'cancel', id.slice(0, 8))
    expect(cancel.stderr).toBe('')
    expect(cancel.code).toBe(0)
    expect(cancel.stdout).toContain(`cancel requested for run ${id} (pid ${live.child.pid} on `)
    expect(cancel.stdout).toMatch(
      new RegExp(`run ${id} ended canceled .* after the request: 0 succeeded, 2 canceled`),
    )

    const ran = await live.done
    expect(ran.code).toBe(1)
    expect(ran.stdout).toContain(`canceling run ${id}: cancel requested`)
    expect(ran.stdout).toMatch(new RegExp(`run ${id} canceled in`))

    const followed = await follow.done
    expect(followed.code).toBe(0)
    expect(followed.stdout).toMatch(new RegExp(`run ${id} canceled in`))

    const { run: canceled, steps } = await stored(dir, id)
    expect(canceled.status).toBe('canceled')
    expect(steps.map((s) => [s.key, s.status])).toEqual([
      ['slow', 'canceled'],
      ['after', 'canceled'],
    ])

    const again = await cli(dir, 'cancel', id)
    expect(again.code).toBe(0)
    expect(again.stdout).toContain('already ended canceled')
  })

  it('`cancel` of a run whose process is gone closes it as canceled at once', async () => {
    const dir = project(SLOW)
    const live = start(dir, 'run', 'slow', '--plain')
    const id = runIdIn(await live.waitFor(/slow\s+started/))
    live.child.kill('SIGKILL')
    await live.done
    const cancel = await cli(dir, 'cancel', id)
    expect(cancel.code).toBe(0)
    expect(cancel.stdout).toBe(`run ${id} canceled (its process, pid ${live.child.pid}, was already gone).\n`)
    const { run: closed, steps } = await stored(dir, id)
    expect(closed.status).toBe('canceled')
    expect(steps.map((s) => s.status)).toEqual(['canceled'])
  })

  it('a killed run reads as interrupted in `runs`, `status` and `show`, with its real duration, before anything recovers it', async () => {
    const dir = project(SLOW)
    const live = start(dir, 'run', 'slow', '--plain')
    const id = runIdIn(await live.waitFor(/slow\s+started/))
    await new Promise((r) => setTimeout(r, 600))
    live.child.kill('SIGKILL')
    await live.done
    const runs = await cli(dir, 'runs', '--json')
    const listed = runs.stdout
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as { id: string; status: string; durationMs: number | null; interrupted?: string },
      )
      .find((r) => r.id === id)
    expect(listed).toMatchObject({
      status: 'interrupted',
      interrupted: expect.stringMatching(/its process \(pid \d+\) is gone/),
    })
    // the real duration: up to its last sign of life (its last events), not 0 ms
    expect(listed!.durationMs).toBeGreaterThan(0)
    expect((await cli(dir, 'runs')).stdout).toMatch(new RegExp(`${id}\\s+interrupted`))
    const status = await cli(dir, 'status')
    expect(status.stdout).toContain('runs in flight: none')
    expect(status.stdout).toMatch(new RegExp(`interrupted: run ${id} .*its process \\(pid \\d+\\) is gone`))
    expect((await cli(dir, 'show', id)).stdout).toMatch(new RegExp(`run ${id} · interrupted`))
    // readers change nothing: the next run (or the daemon) recovers it, with its assets' hooks
    expect((await stored(dir, id)).run.status).toBe('started')
  })

  it('`refresh run | head -3`: a closed stdout cancels the run cleanly, recorded as such, and the exit code says so', async () => {
    const dir = project(`${HEADER}
const chatty = asset({ key: 'chatty', async materialize(ctx) {
  for (let i = 0; i < 300 && !ctx.signal.aborted; i++) {
    ctx.log(\`line \${i}\`)
    await abortable(20, ctx.signal)
  }
} })
export default defineConfig({ assets: [chatty] })
`)
    const child = spawn(process.execPath, [CLI, 'run', '--plain'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (d) => {
      stderr += d
    })
    // read the first lines, then go away as `head -3` does
    let seen = ''
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d) => {
        seen += d
        if (seen.split('\n').length > 3) {
          child.stdout.destroy()
          resolve()
        }
      })
    })
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)))
    const id = runIdIn(seen)
    const { run: recorded } = await stored(dir, id)
    expect(recorded.status).toBe('canceled')
    expect(code).toBe(1)
    expect(stderr).toContain(`the output was closed; run ${id} ended canceled`)
  })

  it('Ctrl-C exits 130 with the run canceled, also when a step ignores its abort signal', async () => {
    const dir = project(SLOW)
    const graceful = start(dir, 'run', 'slow', '--plain')
    const id = runIdIn(await graceful.waitFor(/slow\s+started/))
    graceful.child.kill('SIGINT')
    const g = await graceful.done
    expect(g.code).toBe(130)
    expect(g.stderr).toContain('canceling... (SIGINT; press Ctrl-C again to stop at once)')

    // `stubborn` ignores its abort signal: the run still ends canceled, and the process exits
    const ignoring = start(dir, 'run', 'stubborn', '--plain')
    const ignoringId = runIdIn(await ignoring.waitFor(/stubborn\s+started/))
    ignoring.child.kill('SIGINT')
    expect((await ignoring.done).code).toBe(130)

    expect((await stored(dir, id)).run.status).toBe('canceled')
    expect((await stored(dir, ignoringId)).run.status).toBe('canceled')
    expect((await cli(dir, 'runs', '--status', 'started')).stdout).toContain('no started runs')
  })

  it('input errors of the store commands exit 2 and say what to do', async () => {
    const dir = project(CHAIN)
    const none = await cli(dir, 'show', 'zzzz')
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('no store at')
    expect(none.stderr).toContain('run `refresh run` first')
    await cli(dir, 'run', '--plain')
    const status = await cli(dir, 'runs', '--status', 'sucess')
    expect(status.code).toBe(2)
    expect(status.stderr).toContain('--status sucess: not a run status. Did you mean `success`?')
    const alias = await cli(dir, 'runs', '--status', 'failed')
    expect(alias.code).toBe(0)
    expect(alias.stdout).toContain('no failure runs in')
    const missing = await cli(dir, 'show', 'zzzzzzzz')
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('no run `zzzzzzzz`')
    const flag = await cli(dir, 'run', '--concurrency', 'x')
    expect(flag.code).toBe(2)
    const unknownFlag = await cli(dir, 'runs', '--bogus')
    expect(unknownFlag.code).toBe(2)
  })

  it('every command has --help with an example', async () => {
    const dir = project(CHAIN)
    for (const command of [
      'run',
      'retry',
      'cancel',
      'runs',
      'show',
      'logs',
      'assets',
      'graph',
      'validate',
      'prune',
    ]) {
      const r = await cli(dir, command, '--help')
      expect(r.code).toBe(0)
      expect(r.stdout).toContain(`Usage: refresh ${command}`)
      expect(r.stdout).toMatch(new RegExp(`Examples:\\n {2}refresh ${command}`))
    }
  })

  it('`run --plain` and `runs` never load ink or react; `runs` does not load the config', async () => {
    const dir = project(CHAIN)
    const loaded = async (...args: string[]) => {
      const trace = join(dir, `trace-${args[0]}.txt`)
      const r = await run(['--import', join(ROOT, 'dist/bench/trace-modules.js'), CLI, ...args], {
        cwd: dir,
        env: { REFRESH_TRACE_MODULES: trace },
      })
      expect(r.code).toBe(0)
      return packagesIn(readFileSync(trace, 'utf8'))
    }
    const plain = await loaded('run', '--plain')
    expect(plain.has('better-sqlite3')).toBe(true)
    expect(plain.has('ink')).toBe(false)
    expect(plain.has('react')).toBe(false)
    const runs = await loaded('runs')
    expect(runs.has('better-sqlite3')).toBe(true)
    for (const heavy of ['ink', 'react', 'jiti']) expect(runs.has(heavy)).toBe(false)
  })

  it('the default config (with its aws environment) runs locally without loading the AWS SDK', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'refresh.config.ts'), readFileSync(join(ROOT, 'refresh.config.ts'), 'utf8'))
    const loaded = async (...args: string[]) => {
      const trace = join(dir, `trace-${args[0]}.txt`)
      const r = await run(['--import', join(ROOT, 'dist/bench/trace-modules.js'), CLI, ...args], {
        cwd: dir,
        env: { REFRESH_TRACE_MODULES: trace },
        timeoutMs: 60_000,
      })
      expect(r.code).toBe(0)
      return [...packagesIn(readFileSync(trace, 'utf8'))]
    }
    const aws = (packages: string[]) =>
      packages.filter((p) => p.startsWith('@aws-sdk') || p.startsWith('@smithy'))
    expect(aws(await loaded('run', '--plain', '--set', 'catalog.rows=2000'))).toEqual([])
    expect(aws(await loaded('runs'))).toEqual([])
  })
})
