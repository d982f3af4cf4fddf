import { describe, expect, it } from 'vitest'
import { SelectionError } from '../../core/errors.js'
import { AssetGraph } from '../../core/graph.js'
import { parseSelection, resolveSelection } from '../../core/selection.js'
import { noop } from '../helpers.js'

// catalog -> copy -> clean -> reindex -> snapshot ; clean -> stats ; other (group side, tag tier=gold)
const graph = AssetGraph.build([
  noop('catalog', [], { group: 'upstream' }),
  noop('copy', ['catalog'], { group: 'refresh' }),
  noop('clean', ['copy'], { group: 'refresh', tags: { tier: 'gold' } }),
  noop('reindex', ['clean'], { group: 'refresh' }),
  noop('snapshot', ['reindex'], { group: 'refresh', tags: { tier: 'gold', kind: 'ebs' } }),
  noop('stats', ['clean']),
  noop('media/other', [], { group: 'side' }),
])
const sel = (s: string) => graph.sort(resolveSelection(graph, s))

describe('selection', () => {
  it('selects one key', () => expect(sel('clean')).toEqual(['clean']))
  it('key+ adds everything downstream', () =>
    expect(sel('clean+')).toEqual(['clean', 'reindex', 'snapshot', 'stats']))
  it('+key adds everything upstream', () => expect(sel('+clean')).toEqual(['catalog', 'copy', 'clean']))
  it('key+1 adds one layer down', () => expect(sel('copy+1')).toEqual(['copy', 'clean']))
  it('1+key adds one layer up', () => expect(sel('1+reindex')).toEqual(['clean', 'reindex']))
  it('2+key+1 combines both sides', () =>
    expect(sel('2+reindex+1')).toEqual(['copy', 'clean', 'reindex', 'snapshot']))
  it('+key+ selects the whole lineage', () =>
    expect(sel('+clean+')).toEqual(['catalog', 'copy', 'clean', 'reindex', 'snapshot', 'stats']))
  it('* selects every asset', () => expect(sel('*')).toHaveLength(7))
  it('group:name selects a group', () =>
    expect(sel('group:refresh')).toEqual(['copy', 'clean', 'reindex', 'snapshot']))
  it('group:name+ extends a group downstream', () =>
    expect(sel('group:upstream+1')).toEqual(['catalog', 'copy']))
  it('tag:k=v selects by tag value', () => expect(sel('tag:tier=gold')).toEqual(['clean', 'snapshot']))
  it('tag:k selects assets having the tag', () => expect(sel('tag:kind')).toEqual(['snapshot']))
  it('commas make a union', () =>
    expect(sel('catalog, stats,media/other')).toEqual(['catalog', 'stats', 'media/other']))
  it('keys with prefixes work', () => expect(sel('media/other')).toEqual(['media/other']))

  it('rejects an unknown key with suggestions', () => {
    expect(() => sel('claen+')).toThrow(SelectionError)
    expect(() => sel('claen+')).toThrow(
      'the selection names `claen`, which is not an asset. Did you mean `clean`?',
    )
  })
  it('rejects an unknown group and lists the groups', () => {
    expect(() => sel('group:refrsh')).toThrow(
      /no asset is in group `refrsh`. Did you mean `refresh`\? Groups: default, refresh, side, upstream\./,
    )
  })
  it('rejects a tag nothing has', () =>
    expect(() => sel('tag:tier=silver')).toThrow(/no asset has the tag `tier=silver`/))
  it('rejects empty terms and empty selections', () => {
    expect(() => parseSelection('a,,b')).toThrow(/empty term/)
    expect(() => parseSelection('  ')).toThrow(/selection is empty/)
  })
  it('rejects malformed terms', () => {
    expect(() => parseSelection('a+b')).toThrow(/cannot read `a\+b`/)
    expect(() => parseSelection('x+y+z')).toThrow(SelectionError)
  })
})
