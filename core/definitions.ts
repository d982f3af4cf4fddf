import { z } from 'zod/v4'
import { type AutomationCondition, isAutomationCondition } from './automation.js'
import { ConfigError, didYouMean } from './errors.js'
import { type Freshness, type FreshnessPolicy, readFreshness } from './freshness.js'
import type { JsonObject } from './json.js'
import {
  isPartitionsDefinition,
  type PartitionContext,
  type PartitionsDefinition,
} from './partitions/definitions.js'
import { isPartitionMapping, type PartitionMapping } from './partitions/mapping.js'
import {
  type ConfigOutput,
  type ConfigSchema,
  isConfigSchema,
  parseWithSchema,
  type SchemaIssue,
} from './schema.js'

/**
 * Resources injected into every asset's context (S3 clients, databases, fakes in tests).
 * Augment it to type your own: `declare module 'refresh' { interface Resources { s3: S3Client } }`.
 */
// biome-ignore lint/suspicious/noEmptyInterface: an interface so users can augment it by declaration merging
export interface Resources {}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** Metadata returned by `materialize`: stored with the materialization, shown in views. */
export type Metadata = JsonObject

export interface RetryPolicy {
  /** Total attempts, the first included (1 = no retry). */
  maxAttempts: number
  /** Base delay before a retry. */
  delayMs: number
  /** How the delay grows with the attempt number n (1-based, the attempt that failed):
   * constant = delay, linear = delay * n, exponential = delay * 2^(n-1). */
  backoff: 'constant' | 'linear' | 'exponential'
  /** full = uniform in [0, d]; plus-minus = d + uniform in [-delay, +delay], at least 0. */
  jitter: 'none' | 'full' | 'plus-minus'
  /** Upper bound of any computed delay. */
  maxDelayMs: number
}

/** What an asset's `materialize` function receives. */
export interface AssetContext<C = unknown> {
  readonly runId: string
  readonly key: string
  /** 1-based attempt number of this execution of the step. */
  readonly attempt: number
  readonly maxAttempts: number
  /** The asset's run config, validated by its schema (defaults applied). */
  readonly config: C
  readonly resources: Resources & Record<string, unknown>
  /** Aborted on cancel and on the attempt's timeout; pass it to every I/O call. */
  readonly signal: AbortSignal
  /** Metadata of each dep's materialization this run builds on (undefined if never materialized). */
  readonly upstream: Readonly<Record<string, Metadata | undefined>>
  /** The partition this step materializes: set for a partitioned asset, undefined otherwise. */
  readonly partition?: PartitionContext
  log(message: string, level?: LogLevel): void
  /** Reports progress; views show a bar and a rate. `total` may be omitted when unknown. */
  progress(done: number, total?: number): void
}

export interface AssetSpec<S extends ConfigSchema | undefined = undefined> {
  /** Unique; letters, digits, `_`, `-`, `.`, with `/`-separated prefixes (`media/copy`). */
  key: string
  deps?: readonly string[]
  /**
   * Splits the asset into partitions (`dailyPartitions({ start })`, `staticPartitions([...])`,
   * `multiPartitions({...})`); each run materializes some of them.
   */
  partitions?: PartitionsDefinition
  /**
   * How this asset's partitions relate to a dep's, by dep key, where the default does not fit or
   * does not exist (default: the same partition between the same partitions, overlapping windows
   * between time partitions, every partition of a dep for an unpartitioned asset). Checked when
   * the graph is built: a mapping that cannot relate the two is a `ConfigError` naming both.
   */
  partitionMappings?: Readonly<Record<string, PartitionMapping>>
  group?: string
  tags?: Readonly<Record<string, string>>
  description?: string
  /** A zod (3 or 4) schema for the asset's run config; validated before the run starts. */
  config?: S
  retry?: Partial<RetryPolicy>
  /** Per-attempt timeout: the attempt's signal is aborted and the attempt fails (retriable). */
  timeoutMs?: number
  /** A named concurrency limit shared by all runs and processes on the same store. */
  pool?: string
  /**
   * How old the latest materialization may get (`{ maxLag: '26h' }`, or ms): past it the asset is
   * stale (`refresh status`, `refresh assets`, `/metrics`, the daemon's `asset_stale` alert). For
   * a partitioned asset, the newest materialization of any of its partitions counts.
   */
  freshness?: FreshnessPolicy
  /**
   * How a backfill runs this partitioned asset: at most `maxPartitionsPerRun` partitions in one
   * run (the asset then receives the range in `ctx.partition.range`); default 1, a run each.
   */
  backfillPolicy?: { maxPartitionsPerRun: number }
  /**
   * When the daemon runs this asset on its own (declarative automation): `eager()`, `onCron(...)`,
   * `onMissing()`, or operands joined with `and`, `or`, `not`; per partition for a partitioned
   * asset. `refresh automation` says why it did or did not run.
   */
  automation?: AutomationCondition
  /**
   * Crash recovery: called with the runs of this asset found interrupted (their process died),
   * to stop remote work they left running (ECS tasks, instances). Errors are reported, not thrown.
   */
  recover?: (runIds: readonly string[]) => Promise<unknown> | unknown
  /**
   * The runs this asset holds leftovers of (files written under a temporary name): recovery also
   * passes to `recover` those of them that ended (failed, canceled) with their process gone, so a
   * run closed by another path (`refresh cancel`, a second Ctrl-C) leaves nothing behind either.
   */
  leftoverRuns?: () => Promise<readonly string[]> | readonly string[]
  materialize(
    ctx: AssetContext<S extends ConfigSchema ? ConfigOutput<S> : Record<string, never>>,
  ): MaterializeReturn
}

// biome-ignore lint/suspicious/noConfusingVoidType: lets `async materialize() {}` (Promise<void>) type-check
type MaterializeReturn = Promise<Metadata | undefined | void> | Metadata | undefined | void

const ASSET = Symbol.for('refresh.asset')

/** A validated, frozen asset definition, as returned by `asset()`. */
export interface AssetDefinition {
  readonly [ASSET]: true
  readonly key: string
  readonly deps: readonly string[]
  readonly partitions: PartitionsDefinition | undefined
  /** Explicit mappings by dep key (only deps listed in `deps`). */
  readonly partitionMappings: Readonly<Record<string, PartitionMapping>>
  readonly group: string
  readonly tags: Readonly<Record<string, string>>
  readonly description: string | undefined
  readonly config: ConfigSchema | undefined
  readonly retry: Readonly<RetryPolicy>
  readonly timeoutMs: number | undefined
  readonly pool: string | undefined
  /** The freshness policy read (`maxLagMs`), undefined when the asset has none. */
  readonly freshness: Freshness | undefined
  readonly backfillPolicy: { readonly maxPartitionsPerRun: number } | undefined
  readonly automation: AutomationCondition | undefined
  readonly recover: ((runIds: readonly string[]) => Promise<unknown> | unknown) | undefined
  readonly leftoverRuns: (() => Promise<readonly string[]> | readonly string[]) | undefined
  readonly materialize: (
    // biome-ignore lint/suspicious/noExplicitAny: the definition erases the config type; `asset()` checked it
    ctx: AssetContext<any>,
  ) => MaterializeReturn
}

export const DEFAULT_GROUP = 'default'

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: 1,
  delayMs: 1000,
  backoff: 'constant',
  jitter: 'none',
  maxDelayMs: 10 * 60_000,
})

/** Keys start with a letter or `_` so that selections like `1+key` and `key+2` stay unambiguous. */
const SEGMENT = '[A-Za-z_][A-Za-z0-9_.-]*'
export const KEY_PATTERN = new RegExp(`^${SEGMENT}(/${SEGMENT})*$`)
const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]*$/

const retrySchema = z
  .object({
    maxAttempts: z.number().int().min(1).max(1000),
    delayMs: z.number().min(0),
    backoff: z.enum(['constant', 'linear', 'exponential']),
    jitter: z.enum(['none', 'full', 'plus-minus']),
    maxDelayMs: z.number().min(0),
  })
  .partial()
  .strict()

const specSchema = z
  .object({
    key: z
      .string()
      .regex(
        KEY_PATTERN,
        'must be letters, digits, `_`, `-`, `.`, starting with a letter or `_`, with `/` between parts',
      ),
    deps: z.array(z.string()).optional(),
    partitions: z
      .custom<PartitionsDefinition>(
        isPartitionsDefinition,
        'must be a partitions definition, like dailyPartitions({ start }) or staticPartitions([...])',
      )
      .optional(),
    partitionMappings: z
      .record(
        z.string(),
        z.custom<PartitionMapping>(
          isPartitionMapping,
          'must be a partition mapping, like timeWindowMapping({ startOffset: -1, endOffset: -1 })',
        ),
      )
      .optional(),
    group: z.string().regex(NAME_PATTERN, 'must be letters, digits, `_`, `-`, `.`').optional(),
    tags: z.record(z.string(), z.string()).optional(),
    description: z.string().optional(),
    config: z.custom<ConfigSchema>(isConfigSchema, 'must be a zod schema (z.object({...}))').optional(),
    retry: retrySchema.optional(),
    timeoutMs: z.number().int().positive().optional(),
    pool: z.string().regex(NAME_PATTERN, 'must be letters, digits, `_`, `-`, `.`').optional(),
    // maxLag is read by `readFreshness`, whose message names the forms it takes
    freshness: z.object({ maxLag: z.unknown() }).strict().optional(),
    backfillPolicy: z
      .object({ maxPartitionsPerRun: z.number().int().min(1) })
      .strict()
      .optional(),
    automation: z
      .custom<AutomationCondition>(
        isAutomationCondition,
        "must be an automation condition, like eager(), onCron('0 3 * * *') or and(missing(), not(inProgress()))",
      )
      .optional(),
    recover: z
      .custom<AssetDefinition['recover']>((v) => typeof v === 'function', 'must be a function')
      .optional(),
    leftoverRuns: z
      .custom<AssetDefinition['leftoverRuns']>((v) => typeof v === 'function', 'must be a function')
      .optional(),
    materialize: z.custom<AssetDefinition['materialize']>(
      (v) => typeof v === 'function',
      'must be a function',
    ),
  })
  .strict()

/** Declares an asset. Throws a `ConfigError` naming the field when the definition is invalid. */
export function asset<S extends ConfigSchema | undefined = undefined>(spec: AssetSpec<S>): AssetDefinition {
  const parsed = specSchema.safeParse(spec)
  if (!parsed.success) {
    const name = typeof spec?.key === 'string' ? `asset \`${spec.key}\`` : 'asset'
    throw new ConfigError(`${name} is invalid: ${formatIssues(parsed.error)}`)
  }
  const s = parsed.data
  const deps = s.deps ?? []
  const seen = new Set<string>()
  for (const dep of deps) {
    // a partitioned asset may read its own earlier partitions (a chain: each day builds on the day before)
    if (dep === s.key && !(s.partitions && s.partitionMappings?.[dep])) {
      throw new ConfigError(
        `asset \`${s.key}\` depends on itself; remove it from its deps, or, for a partitioned asset that reads its own earlier partitions, map them: \`partitionMappings: { '${s.key}': timeWindowMapping({ startOffset: -1, endOffset: -1 }) }\`.`,
      )
    }
    if (seen.has(dep)) throw new ConfigError(`asset \`${s.key}\` lists dep \`${dep}\` twice; list it once.`)
    seen.add(dep)
  }
  for (const dep of Object.keys(s.partitionMappings ?? {})) {
    if (!seen.has(dep)) {
      throw new ConfigError(
        `asset \`${s.key}\` maps the partitions of \`${dep}\`, which is not one of its deps.${didYouMean(dep, deps)} Add it to deps or remove it from partitionMappings.`,
      )
    }
  }
  const freshness = s.freshness === undefined ? undefined : readFreshness(s.key, s.freshness)
  return Object.freeze({
    [ASSET]: true as const,
    key: s.key,
    deps: Object.freeze([...deps]),
    partitions: s.partitions,
    partitionMappings: Object.freeze({ ...(s.partitionMappings ?? {}) }),
    group: s.group ?? DEFAULT_GROUP,
    tags: Object.freeze({ ...(s.tags ?? {}) }),
    description: s.description,
    config: s.config,
    retry: Object.freeze({ ...DEFAULT_RETRY, ...stripUndefined(s.retry ?? {}) }),
    timeoutMs: s.timeoutMs,
    pool: s.pool,
    freshness,
    backfillPolicy: s.backfillPolicy ? Object.freeze({ ...s.backfillPolicy }) : undefined,
    automation: s.automation,
    recover: s.recover,
    leftoverRuns: s.leftoverRuns,
    materialize: s.materialize,
  })
}

export function isAssetDefinition(value: unknown): value is AssetDefinition {
  return typeof value === 'object' && value !== null && (value as { [ASSET]?: unknown })[ASSET] === true
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** One line per zod issue: `path.to.field: message`. */
export function formatIssues(error: { readonly issues: readonly SchemaIssue[] }): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.')
      return path ? `${path.replace(/\.\[/g, '[')}: ${issue.message}` : issue.message
    })
    .join('; ')
}

/**
 * The run config key asset checks keep their config under, beside the assets' keys:
 * `{ checks: { ASSET: { CHECK: {...} } } }` (see `resolveCheckConfig`).
 */
export const CHECKS_CONFIG_KEY = 'checks'

/**
 * Validates each planned asset's run config with its schema. Returns the parsed config (defaults
 * applied) per asset. Config for a key that is not an asset is an error (a typo would be ignored),
 * except `checks`, the asset checks' config, passed through as given.
 */
export function resolveRunConfig(
  assets: ReadonlyMap<string, AssetDefinition>,
  keys: Iterable<string>,
  raw: Readonly<Record<string, unknown>> | undefined,
  suggestFrom: (key: string) => string,
): Record<string, unknown> {
  const given = raw ?? {}
  for (const key of Object.keys(given)) {
    if (key === CHECKS_CONFIG_KEY && !assets.has(key)) continue
    if (!assets.has(key)) {
      throw new ConfigError(`config is given for \`${key}\`, which is not an asset.${suggestFrom(key)}`)
    }
  }
  const out: Record<string, unknown> = {}
  const planned = new Set(keys)
  // config given for an asset outside the plan is checked too (and not used): a wrong field is
  // wrong whatever runs, and would otherwise surface only on the run that includes it
  for (const key of [...planned, ...Object.keys(given).filter((k) => !planned.has(k))]) {
    if (key === CHECKS_CONFIG_KEY && !assets.has(key)) {
      // the checks' config is validated with the checks (`resolveCheckConfig`), kept as given
      out[key] = given[key]
      continue
    }
    const def = assets.get(key)!
    const value = given[key]
    if (!def.config) {
      if (value !== undefined && !(isPlainObject(value) && Object.keys(value).length === 0)) {
        throw new ConfigError(
          `config is given for \`${key}\`, but the asset declares no config schema; add \`config: z.object({...})\` to it or remove the config.`,
        )
      }
      if (planned.has(key)) out[key] = {}
      continue
    }
    const parsed = parseWithSchema(def.config, value ?? {})
    if (!parsed.success) {
      throw new ConfigError(`config for asset \`${key}\` is invalid: ${formatIssues(parsed)}`)
    }
    checkNoDroppedFields(`asset \`${key}\``, value, parsed.data, def.config)
    if (planned.has(key)) out[key] = parsed.data
  }
  return out
}

/**
 * A field the schema does not declare is dropped by zod's default object parsing, so a typo (or a
 * field of another asset) would be ignored without a word. A field given but missing from what
 * the schema returned is refused, naming the fields there are; a schema that keeps unknown fields
 * (`.passthrough()`) keeps accepting them.
 */
export function checkNoDroppedFields(what: string, given: unknown, parsed: unknown, schema: unknown): void {
  if (!isPlainObject(given) || !isPlainObject(parsed)) return
  const dropped = Object.keys(given).filter((field) => !(field in parsed))
  if (dropped.length === 0) return
  const shape = (schema as { shape?: unknown }).shape
  const fields = Object.keys(isPlainObject(shape) ? shape : parsed)
  const field = dropped[0]!
  throw new ConfigError(
    `config for ${what} has no field \`${field}\`.${didYouMean(field, fields)} Its fields: ${fields.join(', ') || 'none'}.`,
  )
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * What to say of a building block's factory put where an asset goes (`catalog` instead of
 * `catalog()`): the likeliest wrong entry in a list of assets. Undefined for anything else.
 */
export function uncalledFactory(entry: unknown): string | undefined {
  if (typeof entry !== 'function') return undefined
  const name = (entry as { name?: unknown }).name
  const named = typeof name === 'string' && name !== ''
  const call = named ? `${name}()` : 'it'
  return `is a function${named ? ` (\`${name}\`)` : ''}, not an asset. A building block's factory makes the asset when called: write \`${call}\` (with options, for example \`${call.replace('()', '({ dataDir })')}\`), or declare one with \`asset({ key, materialize })\`.`
}
