import { spawn } from 'node:child_process'
import type { AlertEvent, AlertsConfig } from '../core/config.js'
import { type FreshnessAsset, freshnessOf } from '../core/freshness.js'
import type { RunStore } from '../core/store/run-store.js'
import type { RunRecord } from '../core/store/types.js'

/** One notification: what happened, and the exact commands to look at it or act on it. */
export interface Alert {
  event: AlertEvent
  /** One line for humans (the Slack message). */
  text: string
  at: number
  runId?: string
  /** The sensor, for `sensor_failing`. */
  name?: string
  /** The asset, for `asset_stale` and `asset_fresh`. */
  asset?: string
  /** For `asset_stale` of a time-partitioned asset: the due partition that is not materialized. */
  partition?: string
  /** Exact commands: `refresh show ID`, `refresh retry ID`... */
  commands: string[]
}

/** A delivery that failed after its retries, kept for `refresh status` (the webhook URL never is). */
export interface AlertFailure {
  at: number
  event: AlertEvent
  runId: string | null
  target: 'webhook' | 'command'
  error: string
  attempts: number
}

export interface DeliveryOptions {
  /** Attempts per target (default 4). */
  attempts?: number
  /** The first retry's delay; doubled each time (default 500 ms). */
  backoffMs?: number
  /** Each attempt's limit (default 10 s). */
  timeoutMs?: number
}

const FAILURES_KEY = 'alerts:failures'
const STATE_KEY = 'alerts:state'
const KEEP_FAILURES = 20

/** The run id and the commands to inspect and retry it. */
export function runAlert(event: AlertEvent, run: RunRecord, text: string, at: number): Alert {
  const commands = [`refresh show ${run.id}`, `refresh logs ${run.id}`]
  if (run.status === 'failure' || run.status === 'canceled') commands.push(`refresh retry ${run.id}`)
  if (run.status === 'started') commands.push(`refresh cancel ${run.id}`)
  return {
    event,
    text: `${text}\n${commands.map((c) => `\`${c}\``).join('  ')}`,
    at,
    runId: run.id,
    commands,
  }
}

/** The Slack-compatible body: `text` first, the structured fields beside it. */
export function webhookBody(alert: Alert): string {
  return JSON.stringify({
    text: `[refresh] ${alert.text}`,
    event: alert.event,
    runId: alert.runId ?? null,
    name: alert.name ?? null,
    asset: alert.asset ?? null,
    ...(alert.partition !== undefined ? { partition: alert.partition } : {}),
    at: new Date(alert.at).toISOString(),
    commands: alert.commands,
  })
}

function wants(target: { events?: AlertEvent[] } | undefined, event: AlertEvent): boolean {
  return target !== undefined && (target.events === undefined || target.events.includes(event))
}

/** Replaces the webhook URL (its path and query hold the token) wherever an error quotes it. */
function redact(message: string, url: string | undefined): string {
  if (!url) return message
  let origin = url
  try {
    origin = new URL(url).origin
  } catch {
    // an invalid URL is rejected by the config's schema; keep the message as it is
  }
  return message.split(url).join(`${origin}/…`)
}

/**
 * Sends an alert to the configured webhook and command, each retried with exponential backoff
 * up to `attempts`. Never throws: a delivery that still fails is recorded in the store (settings
 * `alerts:failures`, shown by `refresh status`) and returned.
 */
export async function deliverAlert(
  alert: Alert,
  config: AlertsConfig,
  store: AlertStore | undefined,
  options: DeliveryOptions = {},
): Promise<AlertFailure[]> {
  const failures: AlertFailure[] = []
  const jobs: Array<Promise<void>> = []
  const webhook = config.webhook
  if (webhook && wants(webhook, alert.event)) {
    jobs.push(
      withRetries(() => postWebhook(webhook.url, alert, options.timeoutMs ?? 10_000), options).then((r) => {
        if (r.error !== undefined) {
          failures.push(failure(alert, 'webhook', redact(r.error, webhook.url), r.attempts))
        }
      }),
    )
  }
  const command = config.command
  if (command && wants(command, alert.event)) {
    jobs.push(
      withRetries(() => runCommand(command.argv, alert, options.timeoutMs ?? 10_000), options).then((r) => {
        if (r.error !== undefined) failures.push(failure(alert, 'command', r.error, r.attempts))
      }),
    )
  }
  await Promise.all(jobs)
  if (failures.length > 0 && store?.isOpen) {
    try {
      const previous = await readFailures(store)
      await store.putSetting(
        FAILURES_KEY,
        JSON.stringify([...failures, ...previous].slice(0, KEEP_FAILURES)),
        Date.now(),
      )
    } catch {
      // the store is busy or closed: the failure is still returned to the caller, who logs it
    }
  }
  return failures
}

/** Alert deliveries that failed, newest first. */
export async function readFailures(store: Pick<RunStore, 'getSetting'>): Promise<AlertFailure[]> {
  const row = await store.getSetting(FAILURES_KEY)
  return row ? (JSON.parse(row.value) as AlertFailure[]) : []
}

function failure(
  alert: Alert,
  target: AlertFailure['target'],
  error: string,
  attempts: number,
): AlertFailure {
  return { at: Date.now(), event: alert.event, runId: alert.runId ?? null, target, error, attempts }
}

async function withRetries(
  attempt: () => Promise<void>,
  options: DeliveryOptions,
): Promise<{ error?: string; attempts: number }> {
  const max = options.attempts ?? 4
  let delay = options.backoffMs ?? 500
  let error = ''
  for (let i = 1; i <= max; i++) {
    try {
      await attempt()
      return { attempts: i }
    } catch (cause) {
      const e = cause as Error & { cause?: Error }
      error = e.cause?.message ? `${e.message}: ${e.cause.message}` : e.message
    }
    if (i < max) {
      await new Promise((r) => setTimeout(r, delay))
      delay *= 2
    }
  }
  return { error, attempts: max }
}

async function postWebhook(url: string, alert: Alert, timeoutMs: number): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: webhookBody(alert),
    signal: AbortSignal.timeout(timeoutMs),
  })
  await response.arrayBuffer()
  if (!response.ok) throw new Error(`the webhook answered HTTP ${response.status}`)
}

function runCommand(argv: readonly string[], alert: Alert, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const [program, ...args] = argv as [string, ...string[]]
    // an argument array: no shell ever parses the alert's text
    const child = spawn(program, args, {
      stdio: ['pipe', 'ignore', 'pipe'],
      timeout: timeoutMs,
      env: {
        ...process.env,
        REFRESH_ALERT_EVENT: alert.event,
        REFRESH_ALERT_TEXT: alert.text,
        REFRESH_ALERT_RUN_ID: alert.runId ?? '',
        REFRESH_ALERT_NAME: alert.name ?? '',
        REFRESH_ALERT_ASSET: alert.asset ?? '',
        REFRESH_ALERT_COMMANDS: alert.commands.join('\n'),
      },
    })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-500)
    })
    child.stdin.on('error', () => {
      // a command that does not read stdin: its exit code decides
    })
    child.stdin.end(`${JSON.stringify({ ...alert, at: new Date(alert.at).toISOString() })}\n`)
    child.on('error', (error) => reject(new Error(`cannot start ${program}: ${error.message}`)))
    child.on('close', (code, signal) => {
      if (code === 0) resolve()
      else
        reject(
          new Error(
            `${program} ended with ${signal ? `signal ${signal}` : `exit ${code}`}${stderr.trim() ? `: ${stderr.trim()}` : ''}`,
          ),
        )
    })
  })
}

/** What the watcher persists: where it is in the store, and alerts detected but not yet delivered. */
interface WatchState {
  /** The end time of the last finished run handled, and the ids that ended at that same ms. */
  endedAt: number
  ids: string[]
  /** Started runs already reported overdue. */
  overdue: string[]
  /** Per sensor, the id of the newest failed tick already reported. */
  sensors: Record<string, number>
  /**
   * The assets in a stale period already reported, with what identifies the period: the id of the
   * materialization it is measured from (0: never materialized), or for a time-partitioned asset
   * `partition:KEY`, the due partition not materialized. Saved with the outbox, in the same write,
   * so that a restart (or another daemon taking the lease) does not report the same period again.
   * Absent in a state saved before freshness existed.
   */
  stale?: Record<string, number | string>
  /** Detected, persisted with the cursor, removed once delivered (or given up on). */
  outbox: Alert[]
}

/** What alerting reads and writes: finished runs, their steps, ticks, and its own state in settings. */
export type AlertStore = Pick<
  RunStore,
  | 'isOpen'
  | 'runsEndedAfter'
  | 'getSteps'
  | 'checkResultsOfRun'
  | 'listRuns'
  | 'listTicks'
  | 'latestMaterializations'
  | 'latestMaterialization'
  | 'getSetting'
  | 'putSetting'
>

export interface AlertWatcherOptions {
  store: AlertStore
  config: AlertsConfig
  /** The asset key of the replica rollout (default `replicas`). */
  replicasKey?: string
  /** Sensor names to watch for failing ticks. */
  sensors?: readonly string[]
  /** The assets with a freshness policy (others are ignored): `asset_stale` once per stale period. */
  assets?: readonly FreshnessAsset[]
  delivery?: DeliveryOptions
  /** Called with each alert sent and each delivery that failed (the daemon logs them). */
  onSent?: (alert: Alert, failures: AlertFailure[]) => void
}

/**
 * Detects alert-worthy events in the store incrementally, like `onRunStatus`: its cursor and the
 * alerts not yet delivered are stored together (settings `alerts:state`) in the same write, so a
 * restart neither repeats a delivered alert nor drops a detected one. Delivery runs in the
 * background, never in the daemon's loop.
 */
export class AlertWatcher {
  private readonly o: AlertWatcherOptions
  private state: WatchState | undefined
  private readonly inFlight = new Set<string>()
  private readonly pending = new Set<Promise<void>>()
  /** The state changed since it was last saved (a save can fail while another process holds the lock). */
  private dirty = false

  constructor(options: AlertWatcherOptions) {
    this.o = options
  }

  /** One pass: detect, persist, and start delivering what is in the outbox. */
  async poll(now: number): Promise<void> {
    const { store, config } = this.o
    const state = await this.load(now)
    const found: Alert[] = []
    // runs that ended since the cursor (in the order they ended): failures, and failed checks of
    // any run (a warning leaves its run a success)
    const ended = (await store.runsEndedAfter(['success', 'failure'], state.endedAt)).filter(
      (r) => !(r.endedAt === state.endedAt && state.ids.includes(r.id)),
    )
    for (const run of ended) {
      const checks = (await store.checkResultsOfRun(run.id)).filter((c) => !c.passed)
      if (checks.length > 0) {
        const list = checks
          .map((c) => {
            const kind =
              c.blocking && c.severity === 'error'
                ? 'blocking'
                : c.severity === 'warn'
                  ? 'warning'
                  : 'not blocking'
            return `${c.asset}:${c.check} (${kind}${c.error ? `: ${firstLine(c.error.message)}` : ''})`
          })
          .join(', ')
        found.push(
          runAlert(
            'check_failed',
            run,
            `run ${run.id} (${run.selection}): check${checks.length > 1 ? 's' : ''} failed: ${list}`,
            now,
          ),
        )
      }
      if (run.status !== 'failure') continue
      const failed = (await store.getSteps(run.id)).filter((s) => s.status === 'failed')
      const rollback = failed.find(
        (s) => s.key === (this.o.replicasKey ?? 'replicas') && /rolled back/.test(s.error?.message ?? ''),
      )
      if (rollback) {
        found.push(
          runAlert(
            'replica_rollback',
            run,
            `replicas rolled back in run ${run.id}: ${firstLine(rollback.error?.message ?? '')}`,
            now,
          ),
        )
      }
      const step = failed[0]
      const stopped = checks.find((c) => c.blocking && c.severity === 'error')
      const why = step
        ? `step ${step.key} failed: ${firstLine(step.error?.message ?? '')}`
        : stopped
          ? `check ${stopped.asset}:${stopped.check} failed`
          : firstLine(run.error?.message ?? 'failed')
      found.push(runAlert('run_failure', run, `run ${run.id} (${run.selection}) failed: ${why}`, now))
    }
    if (ended.length > 0) {
      const last = ended.at(-1)!.endedAt!
      const ids = ended.filter((r) => r.endedAt === last).map((r) => r.id)
      state.ids = last === state.endedAt ? [...state.ids, ...ids] : ids
      state.endedAt = last
    }
    // runs going on past their expected duration: reported once each
    if (config.expectedDurationMs !== undefined) {
      const started = await store.listRuns({ status: 'started' })
      const live = new Set(started.map((r) => r.id))
      state.overdue = state.overdue.filter((id) => live.has(id))
      for (const run of started) {
        const since = run.startedAt ?? run.createdAt
        if (now - since <= config.expectedDurationMs || state.overdue.includes(run.id)) continue
        state.overdue.push(run.id)
        found.push(
          runAlert(
            'run_overdue',
            run,
            `run ${run.id} (${run.selection}) has been running for ${Math.round((now - since) / 1000)} s, more than the expected ${Math.round(config.expectedDurationMs / 1000)} s`,
            now,
          ),
        )
      }
    }
    // sensors whose last N ticks all failed: reported once per N failed ticks in a row
    const threshold = config.sensorErrorThreshold ?? 3
    for (const name of this.o.sensors ?? []) {
      const ticks = await store.listTicks(name, threshold)
      if (ticks.length < threshold || ticks.some((t) => t.status !== 'failure')) continue
      const newest = ticks[0]!
      const reported = state.sensors[name] ?? 0
      // a streak already reported: its ticks are all at or below the reported one
      if (ticks.some((t) => t.id <= reported)) continue
      state.sensors[name] = newest.id
      found.push({
        event: 'sensor_failing',
        name,
        at: now,
        text: `sensor ${name} failed ${threshold} ticks in a row: ${firstLine(newest.error?.message ?? '')}\n\`refresh ticks ${name}\``,
        commands: [`refresh ticks ${name}`, `refresh sensors tick ${name}`],
      })
    }
    found.push(...(await this.freshness(state, now)))
    state.outbox.push(...found)
    if (found.length > 0 || ended.length > 0 || this.dirty) await this.save(state, now)
    for (const alert of state.outbox) this.send(alert)
  }

  /**
   * Assets that went stale (`asset_stale`, once per stale period: a period is identified by the
   * materialization it is measured from) and assets fresh again after a reported period
   * (`asset_fresh`). A materialization that is already older than the lag starts a new period.
   */
  private async freshness(state: WatchState, now: number): Promise<Alert[]> {
    const assets = (this.o.assets ?? []).filter((a) => a.freshness !== undefined)
    state.stale ??= {}
    const reported = state.stale
    const found: Alert[] = []
    const watched = new Set(assets.map((a) => a.key))
    // an asset that lost its policy (or left the config) ends its period without a word
    for (const key of Object.keys(reported)) {
      if (!watched.has(key)) {
        delete reported[key]
        this.dirty = true
      }
    }
    if (assets.length > 0) {
      const states = await freshnessOf(this.o.store, assets, now)
      for (const a of assets) {
        const f = states.get(a.key)!
        const period = reported[a.key]
        if (f.status === 'fresh') {
          if (period === undefined) continue
          delete reported[a.key]
          const commands = [`refresh show ${f.runId}`, 'refresh assets']
          found.push({
            event: 'asset_fresh',
            asset: a.key,
            runId: f.runId,
            at: now,
            text: `asset ${a.key} is fresh again: materialized${f.partitionKey ? ` (partition ${f.partitionKey})` : ''} in run ${f.runId} (max lag ${f.maxLag})\n${commands.map((c) => `\`${c}\``).join('  ')}`,
            commands,
          })
          continue
        }
        const id =
          f.status === 'stale'
            ? f.materializationId
            : f.status === 'partition_missing'
              ? `partition:${f.partitionKey}`
              : 0
        if (period === id) continue
        reported[a.key] = id
        // a partitioned asset runs one partition at a time: the due one when it is named, else
        // which one is for the operator to pick
        const commands = [
          'refresh assets',
          f.status === 'partition_missing'
            ? `refresh run ${a.key} --partition ${f.partitionKey}`
            : a.partitions
              ? `refresh partitions ${a.key}`
              : `refresh run ${a.key}`,
        ]
        const why =
          f.status === 'missing'
            ? `never materialized (max lag ${f.maxLag})`
            : f.status === 'partition_missing'
              ? `partition ${f.partitionKey} is not materialized ${shortAge(now - f.staleSince + f.maxLagMs)} after its window ended, more than the max lag ${f.maxLag}`
              : `last materialized ${shortAge(f.ageMs)} ago${f.partitionKey ? ` (partition ${f.partitionKey})` : ''} in run ${f.runId}, more than the max lag ${f.maxLag}`
        found.push({
          event: 'asset_stale',
          asset: a.key,
          ...(f.status === 'partition_missing' ? { partition: f.partitionKey } : {}),
          at: now,
          text: `asset ${a.key} is stale: ${why}\n${commands.map((c) => `\`${c}\``).join('  ')}`,
          commands,
        })
      }
    }
    return found
  }

  /** Waits for deliveries in flight (bounded by their retries), for a clean stop. */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending])
  }

  private send(alert: Alert): void {
    const id = alertId(alert)
    if (this.inFlight.has(id)) return
    this.inFlight.add(id)
    const job = deliverAlert(alert, this.o.config, this.o.store, this.o.delivery)
      .then(async (failures) => {
        // delivered or given up on (the failure is recorded): out of the outbox either way
        const state = this.state
        if (state && this.o.store.isOpen) {
          state.outbox = state.outbox.filter((a) => alertId(a) !== id)
          this.dirty = true
          // a busy store: the next poll saves it (at worst the alert is sent again after a crash)
          await this.save(state, Date.now()).catch(() => {})
        }
        this.o.onSent?.(alert, failures)
      })
      .finally(() => {
        this.inFlight.delete(id)
        this.pending.delete(job)
      })
    this.pending.add(job)
  }

  /**
   * The state, read again from the store whenever this watcher holds nothing unsaved (no change
   * pending, no delivery in flight): a daemon that gets the lease back after another one held it
   * goes on from that one's cursor and reported periods, not from its own older copy. Detection
   * from the stored cursor finds the same alerts again, so re-reading loses nothing.
   */
  private async load(now: number): Promise<WatchState> {
    if (this.state && (this.dirty || this.pending.size > 0)) return this.state
    const row = await this.o.store.getSetting(STATE_KEY)
    if (row) {
      this.state = JSON.parse(row.value) as WatchState
    } else {
      // first start: alert from now on, not on history
      const state: WatchState = { endedAt: now, ids: [], overdue: [], sensors: {}, outbox: [] }
      for (const name of this.o.sensors ?? [])
        state.sensors[name] = (await this.o.store.listTicks(name, 1))[0]?.id ?? 0
      await this.save(state, now)
      this.state = state
    }
    return this.state
  }

  private async save(state: WatchState, now: number): Promise<void> {
    await this.o.store.putSetting(STATE_KEY, JSON.stringify(state), now)
    this.dirty = false
  }
}

function alertId(alert: Alert): string {
  return `${alert.event}:${alert.asset ?? alert.runId ?? alert.name ?? ''}:${alert.at}`
}

/** An age in whole hours (or minutes below 2 h), for an alert's text. */
function shortAge(ms: number): string {
  return ms >= 2 * 3_600_000 ? `${Math.floor(ms / 3_600_000)}h` : `${Math.floor(ms / 60_000)}m`
}

function firstLine(text: string): string {
  const i = text.indexOf('\n')
  return i === -1 ? text : text.slice(0, i)
}
