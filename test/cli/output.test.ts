import { describe, expect, it } from 'vitest'
import { runCommand } from '../../cli/commands/run.js'
import { outputMode } from '../../cli/execute.js'
import { canRedraw, colorsWanted, type Io } from '../../cli/io.js'
import { CLI, configProject, type Exec, run } from '../helpers.js'

/** An Io that collects what a command prints, as a terminal (or not) with the given environment. */
function captured(cwd: string, isTTY: boolean, env: Record<string, string> = {}) {
  const out: string[] = []
  const err: string[] = []
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l), isTTY, cwd, env }
  return { io, out, err }
}

const CHATTY = `import { asset, defineConfig } from 'refresh'
const first = asset({ key: 'first', materialize: (ctx) => {
  ctx.log('a detail for whoever debugs', 'debug')
  ctx.log('first is done')
  return { rows: 1_000_000, file: '/srv/refresh/data/some/deeply/nested/working/directory/first-table.db', note: 'a long note that goes on and on and on past the edge of any terminal' }
} })
const second = asset({ key: 'second_step_with_a_long_name', deps: ['first'], materialize: () => ({ ok: true }) })
export default defineConfig({ assets: [first, second] })
`

const TIME = /^\d\d:\d\d:\d\d\.\d{3} /

describe('output mode', () => {
  it('the live view only on a terminal that can redraw, outside CI; colors unless NO_COLOR', () => {
    const tty = (env: Record<string, string>) => captured('.', true, env).io
    expect(outputMode({}, tty({}))).toBe('tty')
    expect(outputMode({}, tty({ CI: 'true' }))).toBe('plain')
    expect(outputMode({}, tty({ CI: '1' }))).toBe('plain')
    expect(outputMode({}, tty({ CI: 'false' }))).toBe('tty')
    expect(outputMode({}, tty({ TERM: 'dumb' }))).toBe('plain')
    expect(outputMode({}, captured('.', false).io)).toBe('plain')
    expect(outputMode({ plain: true }, tty({}))).toBe('plain')
    expect(outputMode({ json: true, plain: true }, tty({}))).toBe('json')
    expect(canRedraw(tty({ CI: 'true' }))).toBe(false)
    expect(colorsWanted(tty({}))).toBe(true)
    expect(colorsWanted(tty({ NO_COLOR: '1' }))).toBe(false)
    expect(colorsWanted(tty({ NO_COLOR: '' }))).toBe(true)
  })

  it('`--plain` on a terminal, and CI on a terminal, print timestamped lines; debug lines are left to --json and `refresh logs`', async () => {
    const dir = configProject(CHATTY)
    for (const [env, options] of [
      [{}, { plain: true }],
      [{ CI: 'true' }, {}],
    ] as const) {
      const { io, out, err } = captured(dir, true, env)
      const code = await runCommand([], options, io)
      expect(err).toEqual([])
      expect(code).toBe(0)
      expect(out.length).toBeGreaterThan(4)
      for (const line of out) expect(line).toMatch(TIME)
      expect(out.join('\n')).toContain('first is done')
      expect(out.join('\n')).not.toContain('debug')
    }
    const json = captured(dir, false)
    expect(await runCommand([], { json: true }, json.io)).toBe(0)
    expect(json.out.some((l) => (JSON.parse(l) as { level?: string }).level === 'debug')).toBe(true)
  })
})

describe('tables on narrow terminals', () => {
  function cli(dir: string, columns: number, ...args: string[]): Promise<Exec> {
    return run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1', COLUMNS: String(columns) } })
  }

  it('`runs` and `show` fit the width (COLUMNS): the step first, the detail cut by whole values', async () => {
    const dir = configProject(CHATTY)
    const first = await cli(dir, 100, 'run', '--plain')
    expect(first.code).toBe(0)
    await cli(dir, 100, 'run', '--plain')
    const id = /run (\w{18}) started/.exec(first.stdout)![1]!
    for (const columns of [60, 80, 100]) {
      const runs = await cli(dir, columns, 'runs')
      expect(runs.code).toBe(0)
      const runLines = runs.stdout.trimEnd().split('\n')
      for (const line of runLines) expect(line.length, line).toBeLessThanOrEqual(columns)
      expect(runLines).toHaveLength(3)
      expect(runLines[1]).toMatch(/^\w{18}\s+success\s/)

      const show = await cli(dir, columns, 'show', id)
      expect(show.code).toBe(0)
      const table = show.stdout.split('\n').slice(show.stdout.split('\n').indexOf('') + 1)
      for (const line of table) expect(line.length, line).toBeLessThanOrEqual(columns)
      expect(table[0]).toMatch(/^STEP\s+STATUS\s/)
      expect(table[1]).toMatch(/^first\s+succeeded\s/)
      expect(table[2]).toMatch(/^second_step_with_a_long_name\s+succeeded\s/)
      const text = table.join('\n')
      for (const m of text.matchAll(/rows=(\S*)/g)) expect(m[1]).toBe('1000000')
      for (const m of text.matchAll(/file=(\S*)/g)) expect(m[1]).toMatch(/first-table\.db$/)
      if (columns >= 100) expect(text).toContain('rows=1000000')
    }
    // in a pipe with no COLUMNS nothing is cut
    const piped = await run([CLI, 'show', id], { cwd: dir, env: { NO_COLOR: '1', COLUMNS: '' } })
    expect(piped.stdout).toContain('note=a long note that goes on and on and on…')
    expect(piped.stdout).toContain('rows=1000000')
  })

  it('`assets`, `status` and `maintenance status` fit the width too', async () => {
    const dir = configProject(CHATTY)
    expect((await cli(dir, 100, 'run', '--plain')).code).toBe(0)
    for (const columns of [60, 80]) {
      for (const args of [['assets'], ['status'], ['maintenance', 'status']]) {
        const r = await cli(dir, columns, ...args)
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0)
        for (const line of r.stdout.trimEnd().split('\n'))
          if (/^\s*(ASSET|first|second|RUN|NAME|#)\b/.test(line))
            expect(line.length, `${args.join(' ')}: ${line}`).toBeLessThanOrEqual(columns)
      }
      const assets = await cli(dir, columns, 'assets')
      expect(assets.stdout).toMatch(/^first\s/m)
      for (const m of assets.stdout.matchAll(/rows=(\S*)/g)) expect(m[1]).toBe('1000000')
    }
  })
})
