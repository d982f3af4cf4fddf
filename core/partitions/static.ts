import { ConfigError, suggest } from '../errors.js'
import {
  type KeySpace,
  type PartitionContext,
  PartitionsBase,
  type PartitionsContext,
} from './definitions.js'
import { PartitionKeyError } from './errors.js'

/** `|` joins the keys of multi partitions; a key containing it could not be split back. */
const KEY_SEPARATOR = '|'

function checkKey(key: unknown): string | undefined {
  if (typeof key !== 'string' || key === '') return 'keys are non-empty strings'
  if (key.includes(KEY_SEPARATOR))
    return `\`${key}\` contains \`|\`, which joins the keys of multi partitions`
  if (key.trim() !== key) return `\`${key}\` starts or ends with a space`
  if ([...key].some((c) => c.charCodeAt(0) < 0x20))
    return `${JSON.stringify(key)} contains a control character`
  return undefined
}

/** Key -> index with a Map: O(1); the nearest keys by spelling when a key is unknown. */
function lookup(
  def: PartitionsBase,
  index: ReadonlyMap<string, number>,
  keys: readonly string[],
  key: string,
): number {
  const found = index.get(key)
  if (found !== undefined) return found
  const few = keys.length <= 10 ? ` Its keys: ${keys.join(', ')}.` : ''
  throw new PartitionKeyError(key, `is not a key of ${def.describe()}.${few}`, suggest(key, keys))
}

/** Partitions with a fixed list of keys, in the order given (providers, regions, shards). */
export class StaticPartitionsDefinition extends PartitionsBase {
  readonly kind = 'static' as const
  readonly signature: string
  readonly keyFormat: string
  readonly keyList: readonly string[]
  private readonly index: ReadonlyMap<string, number>

  constructor(keys: readonly string[]) {
    super()
    if (!Array.isArray(keys) || keys.length === 0) {
      throw new ConfigError(
        "staticPartitions takes a non-empty list of keys: `staticPartitions(['us', 'eu'])`.",
      )
    }
    const index = new Map<string, number>()
    for (const key of keys) {
      const problem = checkKey(key)
      if (problem) throw new ConfigError(`staticPartitions: ${problem}.`)
      if (index.has(key))
        throw new ConfigError(`staticPartitions lists \`${key}\` twice; list each key once.`)
      index.set(key, index.size)
    }
    this.keyList = Object.freeze([...keys])
    this.index = index
    this.signature = `static:${JSON.stringify(this.keyList)}`
    this.keyFormat = `one of ${this.keyList.length <= 10 ? this.keyList.join(', ') : `${this.keyList.length} keys`}`
  }

  describe(): string {
    return `static partitions (${this.keyList.length} keys)`
  }

  size(_ctx?: PartitionsContext): number {
    return this.keyList.length
  }

  keyAt(index: number, _ctx?: PartitionsContext): string {
    this.checkIndex(index, this.keyList.length)
    return this.keyList[index]!
  }

  indexOf(key: string, _ctx?: PartitionsContext): number {
    return lookup(this, this.index, this.keyList, key)
  }

  protected details(_index: number, key: string): PartitionContext {
    return { key, keys: {} }
  }
}

/**
 * Partitions whose keys are added and removed at run time and kept in the store (a customer, an
 * upload). The definition holds only the name; the keys come from the context's `dynamic` lookup.
 */
export class DynamicPartitionsDefinition extends PartitionsBase {
  readonly kind = 'dynamic' as const
  readonly signature: string
  readonly keyFormat = 'a key added to these dynamic partitions'
  /** One index per key list seen: the lookup returns the same array until keys change. */
  private readonly indexes = new WeakMap<readonly string[], Map<string, number>>()

  readonly name: string

  constructor(name: string) {
    super()
    this.name = name
    if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name)) {
      throw new ConfigError(
        `dynamicPartitions needs a name of letters, digits, \`_\`, \`-\`, \`.\` (the store keeps its keys under it), not ${JSON.stringify(name)}.`,
      )
    }
    this.signature = `dynamic:${name}`
  }

  describe(): string {
    return `dynamic partitions \`${this.name}\``
  }

  /** The keys the context's lookup gives for this definition. */
  keyList(ctx: PartitionsContext): readonly string[] {
    if (!ctx.dynamic) {
      throw new ConfigError(
        `${this.describe()} need their keys: pass \`dynamic: (name) => keys\` in the partitions context (the store provides it).`,
      )
    }
    return ctx.dynamic(this.name)
  }

  size(ctx: PartitionsContext): number {
    return this.keyList(ctx).length
  }

  keyAt(index: number, ctx: PartitionsContext): string {
    const keys = this.keyList(ctx)
    this.checkIndex(index, keys.length)
    return keys[index]!
  }

  /** The keys are looked up once, not per key. */
  override space(ctx: PartitionsContext): KeySpace {
    const keys = this.keyList(ctx)
    return {
      size: keys.length,
      keyAt: (index) => {
        this.checkIndex(index, keys.length)
        return keys[index]!
      },
    }
  }

  indexOf(key: string, ctx: PartitionsContext): number {
    const keys = this.keyList(ctx)
    let index = this.indexes.get(keys)
    if (!index) {
      index = new Map(keys.map((k, i) => [k, i]))
      this.indexes.set(keys, index)
    }
    return lookup(this, index, keys, key)
  }

  protected details(_index: number, key: string): PartitionContext {
    return { key, keys: {} }
  }
}

/** Partitions with a fixed list of keys, in the order given. Keys may not contain `|`. */
export function staticPartitions(keys: readonly string[]): StaticPartitionsDefinition {
  return new StaticPartitionsDefinition(keys)
}

/** Partitions whose keys are managed at run time under `name` (the store keeps them). */
export function dynamicPartitions(name: string): DynamicPartitionsDefinition {
  return new DynamicPartitionsDefinition(name)
}

export { KEY_SEPARATOR }
