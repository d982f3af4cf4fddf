import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStore } from '../../core/store/open.js'
import { CLI, configProject, exec } from '../helpers.js'
import { startPostgres, type TestPostgres } from '../postgres.js'

let server: TestPostgres
beforeAll(async () => {
  server = await startPostgres()
})
afterAll(async () => {
  await server?.stop()
})

const CONFIG = `import { asset, assetCheck, defineConfig, sensor } from 'refresh'
export default defineConfig({
  assets: [
    asset({ key: 'a', materialize: () => ({ rows: 1 }) }),
    asset({ key: 'b', deps: ['a'], materialize: () => ({ rows: 2 }) }),
  ],
  checks: [
    assetCheck({ asset: 'a', name: 'warns', severity: 'warn', evaluate: () => ({ passed: false, metadata: { n: 1 } }) }),
    assetCheck({ asset: 'b', name: 'passes', blocking: true, evaluate: () => ({ passed: true }) }),
  ],
  sensors: [sensor({ name: 'watch', defaultStatus: 'off', evaluate: () => ({ skip: 'nothing' }) })],
})
`

describe('refresh store copy', () => {
  it('moves a SQLite store into an empty Postgres store: runs, events, states kept; a second copy is refused', async () => {
    const dir = configProject(CONFIG)
    const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      exec(process.execPath, [CLI, ...args], { cwd: dir, env })
    for (let i = 0; i < 2; i++) expect((await cli(['run', '--plain'])).code).toBe(0)
    expect((await cli(['sensors', 'on', 'watch'])).code).toBe(0)
    const file = join(dir, '.refresh', 'refresh.db')
    {
      // automation's switches, cursor, states and evaluations go along
      await using store = await openStore(file)
      await store.setAutomationStatus('b', 'off', 5)
      await store.setAutomationStatus(null, 'on', 6)
      const committed = await store.commitAutomationTick({
        expectedTick: null,
        cursor: { tick: 7, eventId: 3, checkId: 2, evaluatedAt: 8 },
        requests: [],
        evaluations: [
          { tick: 7, asset: 'a', evaluatedAt: 8, trueCount: 1, total: 1, tree: '{"v":true}', requests: [] },
        ],
        states: () => [{ asset: 'a', state: '{"requested":false}' }],
        now: 9,
      })
      expect(committed.committed).toBe(true)
    }
    const url = await server.freshUrl('copy')

    const copy = await cli(['store', 'copy', '--from', file, '--to', url])
    expect(copy.code, copy.stderr).toBe(0)
    expect(copy.stdout).toMatch(/copied .*refresh\.db into postgres:\/\/postgres:\*\*\*@/)
    expect(copy.stdout).toMatch(/runs\s+2/)
    expect(copy.stdout + copy.stderr).not.toContain(server.password)

    // the same history through the CLI on either store
    const before = await cli(['runs', '--store', file])
    const after = await cli(['runs'], { REFRESH_STORE: url })
    expect(after.code, after.stderr).toBe(0)
    expect(after.stdout).toBe(before.stdout)
    const id = /^(\w{18})/m.exec(after.stdout.split('\n')[1]!)![1]!
    const shown = await cli(['show', id], { REFRESH_STORE: url })
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.stdout).toContain(`run ${id} · success`)
    await using fromStore = await openStore(file)
    await using toStore = await openStore(url)
    expect(await toStore.countEvents()).toBe(await fromStore.countEvents())
    expect(await toStore.latestMaterializations()).toEqual(await fromStore.latestMaterializations())
    // check results keep their verdicts and flags across the two stores' column types
    const checks = await toStore.latestCheckResults()
    expect(checks).toEqual(await fromStore.latestCheckResults())
    expect(checks.map((c) => [c.asset, c.check, c.passed, c.blocking, c.severity])).toEqual([
      ['a', 'warns', false, false, 'warn'],
      ['b', 'passes', true, true, 'error'],
    ])
    expect((await toStore.getInstigator('watch'))?.status).toBe('on')
    const automation = await toStore.automationState()
    expect(automation).toEqual(await fromStore.automationState())
    expect(automation).toMatchObject({
      status: 'on',
      cursor: { tick: 7 },
      assets: [{ asset: 'a' }, { asset: 'b' }],
    })
    expect(await toStore.latestAutomationEvaluations()).toEqual(await fromStore.latestAutomationEvaluations())
    expect((await toStore.latestAutomationEvaluations()).map((e) => [e.asset, e.tick, e.runIds])).toEqual([
      ['a', 7, []],
    ])

    // a store with runs is not a copy target: exit 2, nothing added
    const again = await cli(['store', 'copy', '--from', file, '--to', url])
    expect(again.code).toBe(2)
    expect(again.stderr).toMatch(/already holds 2 run\(s\); copy history only into an empty store/)
    expect(await toStore.countEvents()).toBe(await fromStore.countEvents())

    // a wrong password: a clear error, exit 2, the password never printed
    const wrong = new URL(await server.freshUrl('wrong'))
    wrong.password = 'wrong-secret'
    const refused = await cli(['store', 'copy', '--from', file, '--to', wrong.toString()])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/refused the login/)
    expect(refused.stderr).not.toContain('wrong-secret')
    expect(refused.stderr).not.toContain(server.password)
  })
})
