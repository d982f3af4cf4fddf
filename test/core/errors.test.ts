import { describe, expect, it } from 'vitest'
import { ebsSnapshots } from '../../assets/ebs.js'
import { ec2Replicas } from '../../assets/ec2-replicas.js'
import { errorCode, isInputError, StoreBusyError } from '../../core/errors.js'
import { materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import { ecsRunner } from '../../runners/ecs.js'
import { CLI, noop, run, tempDir } from '../helpers.js'

describe('one error vocabulary', () => {
  it('factories refuse bad options with the config error (exit 2 with the fix), not a TypeError', () => {
    const cases: Array<() => unknown> = [
      () => ecsRunner({} as never),
      () => ebsSnapshots({} as never),
      () => ec2Replicas({} as never),
    ]
    for (const make of cases) {
      let caught: unknown
      try {
        make()
      } catch (error) {
        caught = error
      }
      expect(errorCode(caught)).toBe('config')
      expect(isInputError(caught)).toBe(true)
      expect((caught as Error).message).toMatch(/is required/)
    }
  })

  it('an engine crash goes up as the bug it is (not as bad input), and the run is closed', async () => {
    await using real = await openStore(':memory:')
    let writes = 0
    // a store whose writes break after the run is created: an internal failure, not the user's input
    const broken = new Proxy(real, {
      get(target, key, receiver) {
        if (key === 'write')
          return () => {
            writes++
            return Promise.reject(new TypeError('the driver broke'))
          }
        const value = Reflect.get(target, key, receiver)
        return typeof value === 'function' ? value.bind(target) : value
      },
    }) as RunStore
    const error = await materialize([noop('a')], { store: broken }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(TypeError)
    expect(errorCode(error)).toBeUndefined()
    expect(writes).toBeGreaterThan(0)
    const [runRecord] = await real.listRuns()
    expect(runRecord?.status).toBe('failure')
  })

  it('store contention is a typed error of the store with a stable code', () => {
    const busy = new StoreBusyError('the store x is busy')
    expect(errorCode(busy)).toBe('store-busy')
    expect(isInputError(busy)).toBe(false)
  })

  it('a store URL that cannot be opened is refused (exit 2) before anything is created, and its password is never printed', async () => {
    const dir = tempDir()
    for (const args of [
      ['runs', '--store', 'postgres://alice:s3cr3t@db.example.invalid:5432/refresh'],
      ['run', '--store', 'postgresql://alice:s3cr3t@db.example.invalid/refresh', '--plain'],
      ['runs', '--store', 'mysql://alice:s3cr3t@db.example.invalid/refresh'],
    ]) {
      const r = await run([CLI, ...args], { cwd: dir, env: { REFRESH_CONFIG: '' } })
      expect(r.code, r.stderr).toBe(2)
      expect(`${r.stdout}${r.stderr}`).not.toContain('s3cr3t')
    }
    const r = await run([CLI, 'runs', '--store', 'postgres://alice:s3cr3t@db.example.invalid:5432/refresh'], {
      cwd: dir,
    })
    expect(r.stderr).toMatch(
      /cannot reach the store postgres:\/\/alice:\*\*\*@db\.example\.invalid:5432\/refresh/,
    )
    const other = await run([CLI, 'runs', '--store', 'mysql://alice:s3cr3t@db.example.invalid/refresh'], {
      cwd: dir,
    })
    expect(other.stderr).toMatch(/`mysql:\/\/` is not a store this version knows; pass a file path/)
    const { readdirSync } = await import('node:fs')
    expect(readdirSync(dir)).toEqual([])
  })
})

describe('a factory given where an asset goes', () => {
  it('materialize() says to call it', async () => {
    const { catalog } = await import('../../assets/catalog.js')
    await expect(materialize([catalog as never])).rejects.toThrow(
      /assets\[0\] is a function \(`catalog`\), not an asset\. .*write `catalog\(\)`/,
    )
  })
})
