import type { AssetDefinition } from '../core/definitions.js'
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
 */
export function parseOverrides(flags: readonly string[], assets: readonly AssetDefinition[]): Override[] {
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
    let schema: ZodLike | undefined = def.config as unknown as ZodLike
    for (const [i, part] of path.entries()) {
      const fields = objectShape(schema)
      if (fields === undefined) {
        // a record, an unknown shape, or a deeper path than the schema declares: leave it to zod
        schema = undefined
        break
      }
      const next = fields[part]
      if (next === undefined) {
        const where = [def.key, ...path.slice(0, i)].join('.')
        throw new ConfigError(
          `--set ${flag}: \`${where}\` has no field \`${part}\`.${didYouMean(part, Object.keys(fields))} Fields: ${Object.keys(fields).join(', ')}.`,
        )
      }
      schema = next
    }
    const value = coerce(text, schema, (expected) => {
      throw new ConfigError(`--set ${flag}: \`${target}\` expects ${expected}, not \`${text}\`.`)
    })
    return { asset: def.key, path, value }
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

/** The little of zod's internals this needs; read by name so any copy of zod works. */
interface ZodLike {
  _def: {
    typeName?: string
    innerType?: ZodLike
    schema?: ZodLike
    type?: ZodLike
    in?: ZodLike
    values?: unknown
    value?: unknown
    options?: ZodLike[]
    shape?: () => Record<string, ZodLike>
  }
}

function unwrap(schema: ZodLike | undefined): ZodLike | undefined {
  let s = schema
  for (let i = 0; s && i < 20; i++) {
    const d = s._def
    switch (d.typeName) {
      case 'ZodOptional':
      case 'ZodNullable':
      case 'ZodDefault':
      case 'ZodCatch':
      case 'ZodReadonly':
        s = d.innerType
        break
      case 'ZodEffects':
        s = d.schema
        break
      case 'ZodBranded':
        s = d.type
        break
      case 'ZodPipeline':
        s = d.in
        break
      default:
        return s
    }
  }
  return s
}

function objectShape(schema: ZodLike | undefined): Record<string, ZodLike> | undefined {
  const s = unwrap(schema)
  return s?._def.typeName === 'ZodObject' && s._def.shape ? s._def.shape() : undefined
}

function coerce(text: string, schema: ZodLike | undefined, fail: (expected: string) => never): unknown {
  const s = unwrap(schema)
  switch (s?._def.typeName) {
    case 'ZodString':
      return text
    case 'ZodNumber': {
      const n = Number(text)
      if (text.trim() === '' || !Number.isFinite(n)) fail('a number')
      return n
    }
    case 'ZodBigInt':
      try {
        return BigInt(text)
      } catch {
        return fail('an integer')
      }
    case 'ZodBoolean':
      if (text === 'true' || text === '1' || text === 'yes') return true
      if (text === 'false' || text === '0' || text === 'no') return false
      return fail('true or false')
    case 'ZodEnum':
      return text
    case 'ZodLiteral':
      return typeof s._def.value === 'string' ? text : parseJsonOr(text)
    case 'ZodDate':
      return new Date(text)
    case 'ZodArray':
    case 'ZodObject':
    case 'ZodRecord':
    case 'ZodTuple': {
      const parsed = parseJsonOr(text, NOT_JSON)
      if (parsed !== NOT_JSON) return parsed
      if (s._def.typeName === 'ZodArray') {
        return text === '' ? [] : text.split(',').map((item) => coerce(item.trim(), s._def.type, fail))
      }
      return fail('JSON (for example {"a":1})')
    }
    case 'ZodUnion': {
      // the first option that takes the text as it is, else the text as JSON
      const mismatch = Symbol('mismatch')
      for (const option of s._def.options ?? []) {
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
