import { z } from 'zod/v4'
import {
  type AssetDefinition,
  CHECKS_CONFIG_KEY,
  checkNoDroppedFields,
  formatIssues,
  isPlainObject,
  type Metadata,
  type Resources,
} from './definitions.js'
import { ConfigError, didYouMean } from './errors.js'
import { type ConfigOutput, type ConfigSchema, isConfigSchema, parseWithSchema } from './schema.js'

/** How much a failed check matters: `error` stops what is downstream when the check is blocking. */
export type CheckSeverity = 'warn' | 'error'

/** What a check's `evaluate` receives: the materialization it judges, its config, the run's resources. */
export interface CheckContext<C = unknown> {
  readonly runId: string
  /** The checked asset. */
  readonly asset: string
  /** The check's name. */
  readonly check: string
  /** The partition the materialization is of (null: the asset is not partitioned). */
  readonly partition: string | null
  /** The metadata of the materialization being checked. */
  readonly metadata: Metadata
  /** The check's run config, validated by its schema (defaults applied). */
  readonly config: C
  readonly resources: Resources & Record<string, unknown>
  /** Aborted when the run is canceled. */
  readonly signal: AbortSignal
  log(message: string, level?: 'debug' | 'info' | 'warn' | 'error'): void
}

/** What `evaluate` returns: whether the data passed, and what to show and keep with the result. */
export interface CheckOutcome {
  passed: boolean
  metadata?: Metadata
}

export interface AssetCheckSpec<S extends ConfigSchema | undefined = undefined> {
  /** The asset this check judges, evaluated right after each of its materializations. */
  asset: string
  /** Unique among the asset's checks; letters, digits, `_`, `-`. */
  name: string
  description?: string
  /**
   * A failed blocking check of severity `error` stops exactly the assets downstream of its asset in
   * that run (they are skipped, naming the check) and the run ends `failure`. Default false.
   */
  blocking?: boolean
  /** Default `error`; a `warn` check never stops anything, it is recorded and alerted. */
  severity?: CheckSeverity
  /** A zod schema for the check's run config (`--set checks.ASSET.NAME.field=value`). */
  config?: S
  evaluate(
    ctx: CheckContext<S extends ConfigSchema ? ConfigOutput<S> : Record<string, never>>,
  ): Promise<CheckOutcome> | CheckOutcome
}

const CHECK = Symbol.for('refresh.check')

/** A validated, frozen asset check, as returned by `assetCheck()`. */
export interface CheckDefinition {
  readonly [CHECK]: true
  readonly asset: string
  readonly name: string
  readonly description: string | undefined
  readonly blocking: boolean
  readonly severity: CheckSeverity
  readonly config: ConfigSchema | undefined
  // biome-ignore lint/suspicious/noExplicitAny: the definition erases the config type; `assetCheck()` checked it
  readonly evaluate: (ctx: CheckContext<any>) => Promise<CheckOutcome> | CheckOutcome
}

export { CHECKS_CONFIG_KEY }

const CHECK_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/

const specSchema = z
  .object({
    asset: z.string().min(1),
    name: z.string().regex(CHECK_NAME, 'must be letters, digits, `_`, `-`, starting with a letter or `_`'),
    description: z.string().optional(),
    blocking: z.boolean().optional(),
    severity: z.enum(['warn', 'error']).optional(),
    config: z.custom<ConfigSchema>(isConfigSchema, 'must be a zod schema (z.object({...}))').optional(),
    evaluate: z.custom<CheckDefinition['evaluate']>((v) => typeof v === 'function', 'must be a function'),
  })
  .strict()

/** Declares an asset check. Throws a `ConfigError` naming the field when the definition is invalid. */
export function assetCheck<S extends ConfigSchema | undefined = undefined>(
  spec: AssetCheckSpec<S>,
): CheckDefinition {
  const parsed = specSchema.safeParse(spec)
  if (!parsed.success) {
    const name =
      typeof spec?.name === 'string' ? `check \`${String(spec.asset)}:${spec.name}\`` : 'asset check'
    throw new ConfigError(`${name} is invalid: ${formatIssues(parsed.error)}`)
  }
  const s = parsed.data
  return Object.freeze({
    [CHECK]: true as const,
    asset: s.asset,
    name: s.name,
    description: s.description,
    blocking: s.blocking ?? false,
    severity: s.severity ?? 'error',
    config: s.config,
    evaluate: s.evaluate,
  })
}

export function isCheckDefinition(value: unknown): value is CheckDefinition {
  return typeof value === 'object' && value !== null && (value as { [CHECK]?: unknown })[CHECK] === true
}

/** A failed result of this check stops what is downstream (blocking, severity `error`). */
export function stopsDownstream(check: Pick<CheckDefinition, 'blocking' | 'severity'>): boolean {
  return check.blocking && check.severity === 'error'
}

/** `asset:name`: how a check is named in messages and in a skipped step's reason (no asset key has `:`). */
export function checkId(asset: string, name: string): string {
  return `${asset}:${name}`
}

/** A skipped step's stored reason: the upstream asset, and the check that stopped it if one did. */
export function parseSkipReason(reason: string): { upstream: string; check: string | undefined } {
  const colon = reason.lastIndexOf(':')
  return colon < 0
    ? { upstream: reason, check: undefined }
    : { upstream: reason.slice(0, colon), check: reason.slice(colon + 1) }
}

/**
 * Checks the definitions against the assets: each names a defined asset, no asset has two checks
 * of the same name. Returns them grouped by asset, in declaration order.
 */
export function checksByAsset(
  checks: readonly unknown[],
  assets: ReadonlyMap<string, AssetDefinition>,
): Map<string, CheckDefinition[]> {
  const out = new Map<string, CheckDefinition[]>()
  checks.forEach((c, i) => {
    if (!isCheckDefinition(c)) {
      throw new ConfigError(`checks[${i}] is not an asset check; make each one with assetCheck({...}).`)
    }
    if (!assets.has(c.asset)) {
      throw new ConfigError(
        `check \`${c.name}\` is on asset \`${c.asset}\`, which is not defined.${didYouMean(c.asset, assets.keys())}`,
      )
    }
    const list = out.get(c.asset) ?? []
    if (list.some((d) => d.name === c.name)) {
      throw new ConfigError(
        `asset \`${c.asset}\` has two checks named \`${c.name}\`; give each its own name.`,
      )
    }
    list.push(c)
    out.set(c.asset, list)
  })
  if (assets.has(CHECKS_CONFIG_KEY) && checks.some((c) => isCheckDefinition(c) && c.config)) {
    throw new ConfigError(
      `an asset is named \`${CHECKS_CONFIG_KEY}\`, which is where checks keep their run config; rename the asset.`,
    )
  }
  return out
}

/**
 * Validates the checks' run config (`config.checks[ASSET][NAME]`) with their schemas. Returns the
 * parsed config (defaults applied) of every check that declares a schema, keyed `asset:name`.
 */
export function resolveCheckConfig(
  byAsset: ReadonlyMap<string, readonly CheckDefinition[]>,
  raw: unknown,
): Map<string, unknown> {
  const given = raw === undefined ? {} : raw
  if (!isPlainObject(given)) {
    throw new ConfigError(`config.${CHECKS_CONFIG_KEY} must be an object: { ASSET: { CHECK: {...} } }.`)
  }
  for (const [asset, perCheck] of Object.entries(given)) {
    const checks = byAsset.get(asset)
    if (!checks) {
      throw new ConfigError(
        `check config is given for asset \`${asset}\`, which has no checks.${didYouMean(asset, byAsset.keys())}`,
      )
    }
    if (!isPlainObject(perCheck)) {
      throw new ConfigError(`config.${CHECKS_CONFIG_KEY}.${asset} must be an object: { CHECK: {...} }.`)
    }
    for (const name of Object.keys(perCheck)) {
      const check = checks.find((c) => c.name === name)
      if (!check) {
        throw new ConfigError(
          `asset \`${asset}\` has no check \`${name}\`.${didYouMean(
            name,
            checks.map((c) => c.name),
          )}`,
        )
      }
      if (!check.config) {
        throw new ConfigError(
          `config is given for check \`${checkId(asset, name)}\`, which declares no config schema.`,
        )
      }
    }
  }
  const out = new Map<string, unknown>()
  for (const [asset, checks] of byAsset) {
    for (const check of checks) {
      if (!check.config) continue
      const value = (given[asset] as Record<string, unknown> | undefined)?.[check.name] ?? {}
      const parsed = parseWithSchema(check.config, value)
      if (!parsed.success) {
        throw new ConfigError(
          `config for check \`${checkId(asset, check.name)}\` is invalid: ${formatIssues(parsed)}`,
        )
      }
      checkNoDroppedFields(`check \`${checkId(asset, check.name)}\``, value, parsed.data, check.config)
      out.set(checkId(asset, check.name), parsed.data)
    }
  }
  return out
}
