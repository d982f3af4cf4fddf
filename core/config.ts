import { dirname, isAbsolute } from 'node:path'
import { z } from 'zod/v4'
import { type CheckDefinition, isCheckDefinition } from './checks.js'
import { withConfigDir } from './config-dir.js'
import { type AssetDefinition, formatIssues, isAssetDefinition, uncalledFactory } from './definitions.js'
import { DURATION_HINT, durationMs } from './duration.js'
import { ConfigError } from './errors.js'
import type { RunGuardConfig } from './guards.js'
import { isRunLauncher, type RunLauncher } from './launcher.js'
import type { RetentionConfig } from './retention.js'

/** What an environment block (`--env NAME`) may override. */
export interface EnvironmentConfig {
  /** Run guards: at most N runs at a time touching a selection, for every entry point. */
  guards?: RunGuardConfig[]
  assets?: AssetDefinition[]
  /**
   * Asset checks (`assetCheck`, or helpers like `indexNotEmpty()`), evaluated right after each
   * materialization of their asset; an environment's list replaces the top level's.
   */
  checks?: CheckDefinition[]
  /** Run config per asset key, merged over the top-level `config`. */
  config?: Record<string, Record<string, unknown>>
  resources?: Record<string, unknown>
  pools?: Record<string, number>
  concurrency?: number
  /** Store file, relative to the config file. */
  store?: string
  /**
   * Where `refresh daemon` starts each run: a local process (the default), or an ECS task with
   * `ecsRunLauncher({ cluster, taskDefinition })` (which needs a store the tasks share: Postgres).
   */
  runLauncher?: RunLauncher
}

/** The shape of `refresh.config.ts`'s default export. */
export interface RefreshConfig extends EnvironmentConfig {
  assets: AssetDefinition[]
  /** Sensors (see `whenMaterialized`, `sensor`). */
  sensors?: unknown[]
  /** Cron schedules (see `schedule`). */
  schedules?: unknown[]
  /**
   * Named blocks chosen with `--env NAME`; each overrides the top level. A block may be a function
   * that returns it: it is called only when that environment is chosen, so a block built from
   * environment variables (`aws`) costs nothing, and cannot fail, when another one runs.
   */
  environments?: Record<string, EnvironmentConfig | (() => EnvironmentConfig)>
  /** Notifications (run failure, a long run, a failing sensor, a replica rollback, a failed check, maintenance). */
  alerts?: AlertsConfig
  /**
   * How long runs and ticks are kept: the daemon prunes older ones once a day, and `refresh prune`
   * uses it when given no `--older-than`.
   */
  retention?: RetentionConfig
}

/** The events an alert is sent for. */
export const ALERT_EVENTS = [
  'run_failure',
  'run_overdue',
  'sensor_failing',
  'replica_rollback',
  'check_failed',
  'asset_stale',
  'asset_fresh',
  'maintenance_on',
  'maintenance_off',
] as const
export type AlertEvent = (typeof ALERT_EVENTS)[number]

/** Where alerts go: a Slack-compatible webhook and/or a command (an argument array, never a shell string). */
export interface AlertsConfig {
  webhook?: { url: string; events?: AlertEvent[] }
  command?: { argv: string[]; events?: AlertEvent[] }
  /** A run still going after this long is reported once (`run_overdue`). */
  expectedDurationMs?: number
  /** A sensor is reported after this many failed ticks in a row (default 3). */
  sensorErrorThreshold?: number
}

/** Gives a config its type; returns it unchanged. */
export function defineConfig<const C extends RefreshConfig>(config: C): C {
  return config
}

const assetSchema = z.custom<AssetDefinition>(isAssetDefinition, {
  message: 'must be an asset made with asset({...})',
})
const checkSchema = z.custom<CheckDefinition>(isCheckDefinition, {
  message: 'must be an asset check made with assetCheck({...})',
})
const poolsSchema = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/, 'pool names are letters, digits, `_`, `-`, `.`'),
  z.number().int().min(1),
)
const runConfigSchema = z.record(z.string(), z.record(z.string(), z.unknown()))

const environmentSchema = z
  .object({
    assets: z.array(assetSchema).optional(),
    checks: z.array(checkSchema).optional(),
    config: runConfigSchema.optional(),
    resources: z.record(z.string(), z.unknown()).optional(),
    pools: poolsSchema.optional(),
    concurrency: z.number().int().min(1).optional(),
    store: z.string().min(1).optional(),
    runLauncher: z
      .custom<RunLauncher>(isRunLauncher, {
        message: 'must be a run launcher, like `ecsRunLauncher({ cluster, taskDefinition })`',
      })
      .optional(),
    guards: z
      .array(
        z
          .object({
            name: z
              .string()
              .regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/, 'guard names are letters, digits, `_`, `-`, `.`'),
            selection: z.string().min(1),
            concurrency: z.number().int().min(1),
          })
          .strict(),
      )
      .optional(),
  })
  .strict()

const alertEventsSchema = z.array(z.enum(ALERT_EVENTS)).min(1).optional()
const alertsSchema = z
  .object({
    webhook: z
      .object({ url: z.string().url('must be an http(s) URL'), events: alertEventsSchema })
      .strict()
      .optional(),
    command: z
      .object({
        argv: z.array(z.string().min(1)).min(1, 'give the program and its arguments, like ["./notify.sh"]'),
        events: alertEventsSchema,
      })
      .strict()
      .optional(),
    expectedDurationMs: z.number().int().positive().optional(),
    sensorErrorThreshold: z.number().int().min(1).optional(),
  })
  .strict()

const durationSchema = z.string().superRefine((value, ctx) => {
  if (durationMs(value) === undefined)
    ctx.addIssue({ code: 'custom', message: `${DURATION_HINT}, not ${JSON.stringify(value)}` })
})
const retentionSchema = z
  .object({ olderThan: durationSchema, keepFailed: durationSchema.optional() })
  .strict()
  .superRefine((r, ctx) => {
    const olderThan = durationMs(r.olderThan)
    const keepFailed = r.keepFailed === undefined ? undefined : durationMs(r.keepFailed)
    if (olderThan !== undefined && keepFailed !== undefined && keepFailed < olderThan) {
      ctx.addIssue({
        code: 'custom',
        path: ['keepFailed'],
        message: `${r.keepFailed} is shorter than olderThan (${r.olderThan}): failed runs are kept at least as long as the others; give ${r.olderThan} or more, or leave it out`,
      })
    }
  })

const configSchema = environmentSchema
  .extend({
    alerts: alertsSchema.optional(),
    retention: retentionSchema.optional(),
    assets: z.array(assetSchema).min(1, 'declare at least one asset'),
    sensors: z.array(z.unknown()).optional(),
    schedules: z.array(z.unknown()).optional(),
    environments: z
      .record(
        z.string().regex(/^[A-Za-z0-9_.-]+$/),
        z.union([
          environmentSchema,
          z.custom<() => EnvironmentConfig>((v) => typeof v === 'function', {
            message: 'must be an environment block `{ assets, config, ... }` or a function returning one',
          }),
        ]),
      )
      .optional(),
  })
  .strict()

/** Validates a loaded config; the error names the file and each bad field's path. */
export function validateConfig(value: unknown, source: string): RefreshConfig {
  if (typeof value !== 'object' || value === null) {
    throw new ConfigError(
      `${source} must export a config as its default export: \`export default defineConfig({ assets: [...] })\`.`,
    )
  }
  checkAssetList((value as { assets?: unknown }).assets, 'assets', source)
  const envs = (value as { environments?: unknown }).environments
  if (typeof envs === 'object' && envs !== null) {
    for (const [name, env] of Object.entries(envs)) {
      if (typeof env === 'object' && env !== null)
        checkAssetList((env as { assets?: unknown }).assets, `environments.${name}.assets`, source)
    }
  }
  const parsed = configSchema.safeParse(value)
  if (!parsed.success) throw new ConfigError(`${source} is invalid: ${formatIssues(parsed.error)}`)
  return parsed.data as RefreshConfig
}

/**
 * A building block's factory put in `assets` as is (`catalog` instead of `catalog()`) is the
 * likeliest wrong entry: say so, with the call to write.
 */
function checkAssetList(assets: unknown, path: string, source: string): void {
  if (!Array.isArray(assets)) return
  for (const [i, entry] of assets.entries()) {
    const uncalled = uncalledFactory(entry)
    if (uncalled) throw new ConfigError(`${source} is invalid: ${path}.${i} ${uncalled}`)
  }
}

/** The config with one environment's block laid over the top level (config < environment). */
export interface ResolvedConfig {
  assets: AssetDefinition[]
  checks: CheckDefinition[]
  config: Record<string, Record<string, unknown>>
  resources: Record<string, unknown>
  pools: Record<string, number>
  concurrency: number | undefined
  store: string | undefined
  environment: string | undefined
  guards: RunGuardConfig[]
  /** The run launcher the daemon uses; undefined: a local process per run. */
  runLauncher: RunLauncher | undefined
}

/** Calls a lazy environment block and validates what it returns, naming the environment on failure. */
function evaluateEnvironment(make: () => EnvironmentConfig, name: string, source: string): EnvironmentConfig {
  let value: unknown
  try {
    // blocks built here keep their data beside the config, as those of the top level do
    value = isAbsolute(source) ? withConfigDir(dirname(source), make) : make()
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause
    throw new ConfigError(
      `${source}: environment \`${name}\` could not be built: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    )
  }
  checkAssetList((value as { assets?: unknown } | null)?.assets, `environments.${name}.assets`, source)
  const parsed = environmentSchema.safeParse(value)
  if (!parsed.success) {
    throw new ConfigError(`${source}: environment \`${name}\` is invalid: ${formatIssues(parsed.error)}`)
  }
  return parsed.data as EnvironmentConfig
}

export function resolveEnvironment(
  config: RefreshConfig,
  name: string | undefined,
  source: string,
): ResolvedConfig {
  let env: EnvironmentConfig = {}
  if (name !== undefined) {
    const envs = config.environments ?? {}
    const found = envs[name]
    if (!found) {
      const known = Object.keys(envs)
      throw new ConfigError(
        `${source} has no environment \`${name}\`; ${known.length ? `it has: ${known.join(', ')}` : `add \`environments: { ${name}: {...} }\` to it`}.`,
      )
    }
    env = typeof found === 'function' ? evaluateEnvironment(found, name, source) : found
  }
  const merged: Record<string, Record<string, unknown>> = {}
  for (const [key, value] of Object.entries(config.config ?? {})) merged[key] = { ...value }
  for (const [key, value] of Object.entries(env.config ?? {}))
    merged[key] = { ...(merged[key] ?? {}), ...value }
  return {
    assets: env.assets ?? config.assets,
    checks: env.checks ?? config.checks ?? [],
    config: merged,
    resources: { ...(config.resources ?? {}), ...(env.resources ?? {}) },
    pools: { ...(config.pools ?? {}), ...(env.pools ?? {}) },
    concurrency: env.concurrency ?? config.concurrency,
    store: env.store ?? config.store,
    environment: name,
    guards: env.guards ?? config.guards ?? [],
    runLauncher: env.runLauncher ?? config.runLauncher,
  }
}
