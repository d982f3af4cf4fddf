import { describe, expect, it } from 'vitest'
import { NonRetriableError } from '../../core/errors.js'
import { materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import { noop } from '../helpers.js'

describe('store.failedSteps', () => {
  it('gives the first failed step in plan order of each run that has one, in one query', async () => {
    await using store = await openStore(':memory:')
    const fail = (key: string, deps: string[]) =>
      noop(key, deps, {
        materialize: () => {
          throw new NonRetriableError(`${key} broke`)
        },
      })
    const ok = await materialize([noop('a'), noop('b', ['a'])], { store })
    const failed = await materialize([noop('a'), fail('b', ['a']), fail('c', ['a']), noop('d', ['b'])], {
      store,
      concurrency: 1,
    })
    const steps = await store.failedSteps([ok.runId, failed.runId, 'no-such-run'])
    expect([...steps]).toEqual([[failed.runId, 'b']])
    expect(await store.failedSteps([])).toEqual(new Map())
  })
})
