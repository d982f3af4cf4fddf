import type { CheckDefinition } from '../core/checks.js'
import { type AssetDefinition, CHECKS_CONFIG_KEY } from '../core/definitions.js'
import { ConfigError, didYouMean } from '../core/errors.js'

/** One `--set asset.path=value`, its value already coerced to the type the schema expects. */
export interface Override {
  asset: string
  path: string[]
  value: unknown
}

/**
 * Reads `--set asset.key=value` flags. The asset is the longest asset key the left side starts
 * with (keys may contain dots); the rest is a path into the asset's zod config schema, and the
 * string value is coerced to what the schema expects there (number, boolean, enum, JSON for
 * arrays and objects). The schema itself validates the result later, with the run's config.
 * `--set checks.ASSET.CHECK.field=value` sets an asset check's config the same way (unless an
 * asset is named `checks`): it lands in the run config as `checks: { ASSET: { CHECK: {...} } }`.
 */
export function parseOverrides(
  flags: readonly string[],
  assets: readonly AssetDefinition[],
  checks: readonly CheckDefinition[] = [],
): Override[] {
  const byKey = new Map(assets.map((a) => [a.key, a]))
  return flags.map((flag) => {
    const eq = flag.indexOf('=')
    if (eq <= 0) {
      throw new ConfigError(
        `--set ${flag}: write it as asset.field=value (for example --set catalog.rows=100).`,
      )
    }
    const target = flag.slice(0, eq)
    const text = flag.slice(eq + 1)
    if (target.startsWith(`${CHECKS_CONFIG_KEY}.`) && !byKey.has(CHECKS_CONFIG_KEY)) {
      return checkOverride(flag, target, text, checks)
    }
    const def = [...byKey.values()]
      .filter((a) => target.startsWith(`${a.key}.`))
      .sort((a, b) => b.key.length - a.key.length)[0]
    if (!def) {
      const name = target.includes('.') ? target.slice(0, target.indexOf('.')) : target
      if (byKey.has(target)) {
        throw new ConfigError(
          `--set ${flag}: name a field of \`${target}\` (for example --set ${target}.field=value).`,
        )
      }
      throw new ConfigError(`--set ${flag}: \`${name}\` is not an asset.${didYouMean(name, byKey.keys())}`)
    }
    const path = target.slice(def.key.length + 1).split('.')
    if (path.some((p) => p === '')) throw new ConfigError(`--set ${flag}: the field path has an empty part.`)
    if (!def.config) {
      throw new ConfigError(
        `--set ${flag}: asset \`${def.key}\` declares no config schema; add \`config: z.object({...})\` to it first.`,
      )
    }
    return { asset: def.key, path, value: coerced(flag, target, text, def.config, def.key, path) }
  })
}

/** `--set checks.ASSET.CHECK.path=value`: the asset is the longest key with checks that fits. */
function checkOverride(
  flag: string,
  target: string,
  text: string,
  checks: readonly CheckDefinition[],
): Override {
  const rest = target.slice(CHECKS_CONFIG_KEY.length + 1)
  const assetsWithChecks = [...new Set(checks.map((c) => c.asset))]
  const asset = assetsWithChecks
    .filter((a) => rest.startsWith(`${a}.`))
    .sort((a, b) => b.length - a.length)[0]
  if (asset === undefined) {
    const name = rest.split('.')[0] ?? ''
    throw new ConfigError(
      `--set ${flag}: write it as checks.ASSET.CHECK.field=value; \`${name}\` has no checks.${didYouMean(name, assetsWithChecks)}${assetsWithChecks.length ? ` Assets with checks: ${assetsWithChecks.join(', ')}.` : ''}`,
    )
  }
  const [name, ...path] = rest.slice(asset.length + 1).split('.')
  const own = checks.filter((c) => c.asset === asset)
  const check = own.find((c) => c.name === name)
  if (!check) {
    throw new ConfigError(
      `--set ${flag}: asset \`${asset}\` has no check \`${name}\`.${didYouMean(
        name ?? '',
        own.map((c) => c.name),
      )} Its checks: ${own.map((c) => c.name).join(', ')}.`,
    )
  }
  if (path.length === 0 || path.some((p) => p === '')) {
    throw new ConfigError(
      `--set ${flag}: name a field of check \`${asset}:${check.name}\` (checks.${asset}.${check.name}.field=value).`,
    )
  }
  if (!check.config) {
    throw new ConfigError(`--set ${flag}: check \`${asset}:${check.name}\` declares no config schema.`)
  }
  const value = coerced(flag, target, text, check.config, `${CHECKS_CONFIG_KEY}.${asset}.${check.name}`, path)
  return { asset: CHECKS_CONFIG_KEY, path: [asset, check.name, ...path], value }
}

/** The value of one flag, coerced to what the schema expects at `path` (an unknown field named). */
function coerced(
  flag: string,
  target: string,
  text: string,
  root: unknown,
  label: string,
  path: string[],
): unknown {
  let schema: unknown = root
  for (const [i, part] of path.entries()) {
    const fields = objectShape(schema)
    if (fields === undefined) {
      // a record, an unknown shape, or a deeper path than the schema declares: leave it to zod
      schema = undefined
      break
    }
    const next = fields[part]
    if (next === undefined) {
      const where = [label, ...path.slice(0, i)].join('.')
      throw new ConfigError(
        `--set ${flag}: \`${where}\` has no field \`${part}\`.${didYouMean(part, Object.keys(fields))} Fields: ${Object.keys(fields).join(', ')}.`,
      )
    }
    schema = next
  }
  return coerce(text, schema, (expected) => {
    throw new ConfigError(`--set ${flag}: \`${target}\` expects ${expected}, not \`${text}\`.`)
  })
}

/** Lays overrides over a run config (config < environment < --set), without mutating it. */
export function applyOverrides(
  config: Record<string, Record<string, unknown>>,
  overrides: readonly Override[],
): Record<string, Record<string, unknown>> {
  const out = structuredClone(config)
  for (const o of overrides) {
    const root: Record<string, unknown> = out[o.asset] ?? {}
    out[o.asset] = root
    let node = root
    for (const part of o.path.slice(0, -1)) {
      const child = node[part]
      const next: Record<string, unknown> =
        typeof child === 'object' && child !== null ? (child as Record<string, unknown>) : {}
      node[part] = next
      node = next
    }
    node[o.path.at(-1)!] = o.value
  }
  return out
}

/**
 * What `--set` needs to know of a schema, read from zod's internals by name so that any copy of
 * zod works: zod 3 keeps them in `_def` (`typeName: 'ZodObject'`), zod 4 in `_zod.def`
 * (`type: 'object'`). Wrappers (optional, default, effects, pipes...) are seen through.
 */
type SchemaNode =
  | { kind: 'object'; shape: Record<string, unknown> }
  | { kind: 'array'; element: unknown }
  | { kind: 'union'; options: readonly unknown[] }
  | { kind: 'literal'; value: unknown }
  | { kind: LeafKind }

type LeafKind = 'string' | 'number' | 'bigint' | 'boolean' | 'enum' | 'date' | 'record' | 'tuple' | 'other'

interface Zod3Def {
  typeName?: string
  innerType?: unknown
  schema?: unknown
  type?: unknown
  in?: unknown
  value?: unknown
  options?: readonly unknown[]
  shape?: () => Record<string, unknown>
  getter?: () => unknown
}

interface Zod4Def {
  type?: string
  innerType?: unknown
  in?: unknown
  out?: unknown
  values?: readonly unknown[]
  options?: readonly unknown[]
  shape?: Record<string, unknown>
  element?: unknown
  getter?: () => unknown
}

const ZOD3_KINDS: Record<string, LeafKind> = {
  ZodString: 'string',
  ZodNumber: 'number',
  ZodBigInt: 'bigint',
  ZodBoolean: 'boolean',
  ZodEnum: 'enum',
  ZodNativeEnum: 'enum',
  ZodDate: 'date',
  ZodRecord: 'record',
  ZodTuple: 'tuple',
}
const ZOD4_KINDS: Record<string, LeafKind> = {
  string: 'string',
  number: 'number',
  bigint: 'bigint',
  boolean: 'boolean',
  enum: 'enum',
  date: 'date',
  record: 'record',
  tuple: 'tuple',
}

/** The schema under its wrappers, as a node; undefined when it is not a zod schema. */
function nodeOf(schema: unknown): SchemaNode | undefined {
  let s = schema
  for (let depth = 0; depth < 20; depth++) {
    if (typeof s !== 'object' || s === null) return undefined
    if ('_zod' in s) {
      const d: Zod4Def = (s as { _zod: { def: Zod4Def } })._zod.def
      switch (d.type) {
        case 'optional':
        case 'nullable':
        case 'default':
        case 'prefault':
        case 'nonoptional':
        case 'catch':
        case 'readonly':
          s = d.innerType
          continue
        case 'pipe': {
          // `z.preprocess(fn, schema)` is a pipe from a transform: the text goes to the schema
          const from = (d.in as { _zod?: { def?: { type?: string } } } | undefined)?._zod?.def?.type
          s = from === 'transform' ? d.out : d.in
          continue
        }
        case 'lazy':
          s = d.getter?.()
          continue
        case 'object':
          return { kind: 'object', shape: d.shape ?? {} }
        case 'array':
          return { kind: 'array', element: d.element }
        case 'union':
          return { kind: 'union', options: d.options ?? [] }
        case 'literal':
          return { kind: 'literal', value: d.values?.[0] }
        default:
          return { kind: ZOD4_KINDS[d.type ?? ''] ?? 'other' }
      }
    }
    const d = (s as { _def?: Zod3Def })._def
    if (typeof d !== 'object' || d === null) return undefined
    switch (d.typeName) {
      case 'ZodOptional':
      case 'ZodNullable':
      case 'ZodDefault':
      case 'ZodCatch':
      case 'ZodReadonly':
        s = d.innerType
        continue
      case 'ZodEffects':
        s = d.schema
        continue
      case 'ZodBranded':
        s = d.type
        continue
      case 'ZodPipeline':
        s = d.in
        continue
      case 'ZodLazy':
        s = d.getter?.()
        continue
      case 'ZodObject':
        return { kind: 'object', shape: d.shape?.() ?? {} }
      case 'ZodArray':
        return { kind: 'array', element: d.type }
      case 'ZodUnion':
      case 'ZodDiscriminatedUnion':
        return { kind: 'union', options: d.options ?? [] }
      case 'ZodLiteral':
        return { kind: 'literal', value: d.value }
      default:
        return { kind: ZOD3_KINDS[d.typeName ?? ''] ?? 'other' }
    }
  }
  return undefined
}

function objectShape(schema: unknown): Record<string, unknown> | undefined {
  const node = nodeOf(schema)
  return node?.kind === 'object' ? node.shape : undefined
}

function coerce(text: string, schema: unknown, fail: (expected: string) => never): unknown {
  const node = nodeOf(schema)
  switch (node?.kind) {
    case 'string':
      return text
    case 'number': {
      const n = Number(text)
      if (text.trim() === '' || !Number.isFinite(n)) fail('a number')
      return n
    }
    case 'bigint':
      try {
        return BigInt(text)
      } catch {
        return fail('an integer')
      }
    case 'boolean':
      if (text === 'true' || text === '1' || text === 'yes') return true
      if (text === 'false' || text === '0' || text === 'no') return false
      return fail('true or false')
    case 'enum':
      return text
    case 'literal':
      return typeof node.value === 'string' ? text : parseJsonOr(text)
    case 'date':
      return new Date(text)
    case 'array':
    case 'object':
    case 'record':
    case 'tuple': {
      const parsed = parseJsonOr(text, NOT_JSON)
      if (parsed !== NOT_JSON) return parsed
      if (node.kind === 'array') {
        return text === '' ? [] : text.split(',').map((item) => coerce(item.trim(), node.element, fail))
      }
      return fail('JSON (for example {"a":1})')
    }
    case 'union': {
      // the first option that takes the text as it is, else the text as JSON
      const mismatch = Symbol('mismatch')
      for (const option of node.options) {
        try {
          return coerce(text, option, () => {
            throw mismatch
          })
        } catch (error) {
          if (error !== mismatch) throw error
        }
      }
      return parseJsonOr(text)
    }
    default:
      return parseJsonOr(text)
  }
}

const NOT_JSON = Symbol('not JSON')

function parseJsonOr(text: string, fallback: unknown = text): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return fallback
  }
}
