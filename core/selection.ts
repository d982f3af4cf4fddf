import { didYouMean, SelectionError } from './errors.js'
import type { AssetGraph } from './graph.js'

/**
 * Selection syntax (terms joined by commas, a union):
 *   key        the asset            key+   and everything downstream   +key   and everything upstream
 *   key+1      and one layer down   2+key  and two layers up           +key+  both ways
 *   *          every asset          group:name   an asset group (accepts the same + suffixes)
 *   tag:k=v    assets whose tag k is v          tag:k        assets that have tag k
 */
export type SelectionTerm =
  | { kind: 'all' }
  | { kind: 'key'; key: string; up: number; down: number }
  | { kind: 'group'; group: string; up: number; down: number }
  | { kind: 'tag'; name: string; value: string | undefined }

const TERM = /^(?:(\d*)\+)?([^+]+?)(?:\+(\d*))?$/

export function parseSelection(selection: string): SelectionTerm[] {
  const text = selection.trim()
  if (text === '') throw new SelectionError('the selection is empty; use `*` for every asset.')
  return text.split(',').map((raw) => {
    const term = raw.trim()
    if (term === '') {
      throw new SelectionError(`the selection \`${selection}\` has an empty term; remove the extra comma.`)
    }
    if (term === '*') return { kind: 'all' }
    if (term.startsWith('tag:')) {
      const body = term.slice(4)
      const eq = body.indexOf('=')
      const name = eq === -1 ? body : body.slice(0, eq)
      if (name === '')
        throw new SelectionError(`\`${term}\` names no tag; write \`tag:name=value\` or \`tag:name\`.`)
      return { kind: 'tag', name, value: eq === -1 ? undefined : body.slice(eq + 1) }
    }
    const match = TERM.exec(term)
    if (!match) {
      throw new SelectionError(
        `cannot read \`${term}\` in the selection \`${selection}\`; write \`key\`, \`key+\`, \`+key\`, \`key+1\`, \`1+key\`, \`*\`, \`group:name\` or \`tag:k=v\`.`,
      )
    }
    const up = depth(match[1])
    const down = depth(match[3])
    const base = match[2]!
    if (base.startsWith('group:')) {
      const group = base.slice(6)
      if (group === '') throw new SelectionError(`\`${term}\` names no group; write \`group:name\`.`)
      return { kind: 'group', group, up, down }
    }
    return { kind: 'key', key: base, up, down }
  })
}

/** `undefined` = no `+` on that side, '' = a bare `+` (all layers), digits = that many layers. */
function depth(text: string | undefined): number {
  if (text === undefined) return 0
  if (text === '') return Number.POSITIVE_INFINITY
  return Number.parseInt(text, 10)
}

/** Resolves a selection to the set of asset keys it names. Unknown names are errors, never empty sets. */
export function resolveSelection(graph: AssetGraph, selection: string): Set<string> {
  const terms = parseSelection(selection)
  const out = new Set<string>()
  const expand = (key: string, up: number, down: number) => {
    out.add(key)
    if (up > 0) for (const k of graph.walk(key, 'up', up)) out.add(k)
    if (down > 0) for (const k of graph.walk(key, 'down', down)) out.add(k)
  }
  for (const term of terms) {
    switch (term.kind) {
      case 'all':
        for (const key of graph.order) out.add(key)
        break
      case 'key':
        if (!graph.has(term.key)) {
          throw new SelectionError(
            `the selection names \`${term.key}\`, which is not an asset.${didYouMean(term.key, graph.assets.keys())} Run \`refresh assets\` to list them.`,
          )
        }
        expand(term.key, term.up, term.down)
        break
      case 'group': {
        const members = [...graph.assets.values()].filter((a) => a.group === term.group)
        if (members.length === 0) {
          const groups = new Set([...graph.assets.values()].map((a) => a.group))
          throw new SelectionError(
            `no asset is in group \`${term.group}\`.${didYouMean(term.group, groups)} Groups: ${[...groups].sort().join(', ')}.`,
          )
        }
        for (const a of members) expand(a.key, term.up, term.down)
        break
      }
      case 'tag': {
        let found = false
        for (const a of graph.assets.values()) {
          const value = a.tags[term.name]
          if (value !== undefined && (term.value === undefined || value === term.value)) {
            out.add(a.key)
            found = true
          }
        }
        if (!found) {
          const label = term.value === undefined ? term.name : `${term.name}=${term.value}`
          throw new SelectionError(`no asset has the tag \`${label}\`; check the tag name and value.`)
        }
        break
      }
    }
  }
  return out
}
