import { Worker } from 'node:worker_threads'
import { ConfigError } from '../core/errors.js'
import type { DaemonState, FromHttpWorker, HttpWorkerData, ToHttpWorker } from './http-worker.js'
import type { OpsFreshness, OpsInstigator } from './ops-query.js'

export interface OpsHttpOptions {
  host: string
  port: number
  /** The store's location, opened again by the query thread (may hold a secret: never printed). */
  storeLocation: string
  instigators: OpsInstigator[]
  promoteKey?: string
  /** The assets with a freshness policy (`refresh_asset_stale` and the age of each). */
  freshness?: OpsFreshness[]
  /** How long a request waits for the store before answering from the last values (default 1000 ms). */
  timeoutMs?: number
  /** `/healthz` fails when the daemon's last iteration is older than this (default 10 s). */
  staleAfterMs?: number
  /** Read several times a second from the daemon's own thread. */
  state(): DaemonState
}

export interface OpsHttp {
  /** `host:port` actually bound (port 0 picks a free one). */
  address: string
  close(): Promise<void>
}

/**
 * Parses `--http`: `PORT` (loopback), `HOST:PORT`, or `[IPv6]:PORT`. Loopback unless a host is
 * given on purpose: the endpoint tells anyone who can reach it about the runs.
 */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(text.trim())
  const port = m ? Number(m[2]) : Number.NaN
  if (!m || port > 65_535) {
    throw new ConfigError(
      `--http ${text}: expected PORT or HOST:PORT, like 9464 (127.0.0.1:9464) or 0.0.0.0:9464 to listen on every interface.`,
    )
  }
  return { host: m[1]?.replace(/^\[|\]$/g, '') ?? '127.0.0.1', port }
}

/**
 * Starts the daemon's HTTP endpoint in a worker thread (see http-worker.ts): resolves once it
 * listens; a port in use is a `ConfigError` (exit 2) and nothing is left running.
 */
export async function startOpsHttp(options: OpsHttpOptions): Promise<OpsHttp> {
  const timeoutMs = options.timeoutMs ?? 1_000
  const data: HttpWorkerData = {
    host: options.host,
    port: options.port,
    storeLocation: options.storeLocation,
    instigators: options.instigators,
    promoteKey: options.promoteKey,
    freshness: options.freshness,
    timeoutMs,
    staleAfterMs: options.staleAfterMs ?? 10_000,
    probeBusyMs: Math.max(50, Math.floor(timeoutMs / 2)),
  }
  const worker = new Worker(new URL('./http-worker.js', import.meta.url), { workerData: data })
  const first = await new Promise<FromHttpWorker | { type: 'crash'; error: Error }>((resolve) => {
    worker.once('message', resolve)
    worker.once('error', (error) => resolve({ type: 'crash', error }))
  })
  if (first.type !== 'listening') {
    await worker.terminate()
    const where = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`
    if (first.type === 'listen-error' && first.code === 'EADDRINUSE') {
      throw new ConfigError(
        `--http ${where}: the port is in use by another process (another daemon's endpoint?). Pick a free port with --http HOST:PORT, or stop the process that holds it; the daemon did not start.`,
      )
    }
    const detail =
      first.type === 'listen-error'
        ? `${first.code}: ${first.message}`
        : first.type === 'crash'
          ? first.error.message
          : ''
    throw new ConfigError(`--http ${where}: cannot listen there (${detail}); the daemon did not start.`)
  }
  const post = (message: ToHttpWorker) => worker.postMessage(message)
  post({ type: 'state', state: options.state() })
  // the daemon's loop and this timer share a thread: a loop blocked on the store stops the updates,
  // and the endpoint then reports the loop as stalled
  const timer = setInterval(() => post({ type: 'state', state: options.state() }), 200)
  timer.unref()
  worker.unref()
  return {
    address: first.address,
    async close() {
      clearInterval(timer)
      const closed = new Promise<void>((resolve) => {
        worker.on('message', (m: FromHttpWorker) => m.type === 'closed' && resolve())
        worker.once('exit', () => resolve())
      })
      post({ type: 'close' })
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2_000))])
      await worker.terminate()
    },
  }
}
