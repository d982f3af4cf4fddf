import { describe, expect, it } from 'vitest'
import { GraphError } from '../../core/errors.js'
import { AssetGraph } from '../../core/graph.js'
import { materialize } from '../../core/materialize.js'
import { noop } from '../helpers.js'

describe('asset graph', () => {
  it('orders assets topologically, keeping declaration order among independent ones', () => {
    const graph = AssetGraph.build([noop('c', ['b']), noop('b', ['a']), noop('x'), noop('a')])
    expect(graph.order).toEqual(['x', 'a', 'b', 'c'])
  })

  it('rejects duplicate keys', () => {
    expect(() => AssetGraph.build([noop('a'), noop('a')])).toThrow(
      new GraphError('asset key `a` is defined twice; asset keys must be unique.'),
    )
  })

  it('rejects a missing dep with a did-you-mean suggestion', () => {
    expect(() => AssetGraph.build([noop('copy'), noop('clean', ['copyy'])])).toThrow(
      'asset `clean` depends on `copyy`, which is not defined. Did you mean `copy`?',
    )
  })

  it('rejects a missing dep with no close name without a suggestion', () => {
    expect(() => AssetGraph.build([noop('copy'), noop('clean', ['zzzzzzzz'])])).toThrow(
      /^asset `clean` depends on `zzzzzzzz`, which is not defined\.$/,
    )
  })

  it('rejects a cycle and shows its path', () => {
    const build = () =>
      AssetGraph.build([noop('root'), noop('a', ['root', 'c']), noop('b', ['a']), noop('c', ['b'])])
    expect(build).toThrow(GraphError)
    expect(build).toThrow(/cycle: a -> b -> c -> a \(/)
  })

  it('finds a cycle in a long chain without recursion limits', () => {
    const n = 50_000
    const assets = Array.from({ length: n }, (_, i) => noop(`n${i}`, [`n${(i + 1) % n}`]))
    expect(() => AssetGraph.build(assets)).toThrow(/cycle: /)
  })

  it('is checked before anything runs or is stored', async () => {
    let ran = false
    const a = noop('a', [], {
      materialize: () => {
        ran = true
      },
    })
    await expect(materialize([a, noop('b', ['nope'])])).rejects.toThrow(GraphError)
    expect(ran).toBe(false)
  })
})
