import type { IncomingMessage, ServerResponse } from 'node:http'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { ConfigError } from '../../core/errors.js'
import { type CliContext, EXIT, type Io } from '../io.js'

interface ServeOptions {
  index?: string
  port: string
  host: string
  config?: string
  env?: string
}

export function registerServe(program: Command, ctx: CliContext): void {
  program
    .command('serve')
    .description('serve search and a deep /healthz over a snapshot or the promoted index (read-only HTTP)')
    .option(
      '--index <dir>',
      'a snapshot directory (default: the promoted snapshot, followed across promotions)',
    )
    .option('-p, --port <n>', 'port to listen on (0: any free port)', '8080')
    .option('--host <host>', 'address to bind (default loopback; 0.0.0.0 to serve other hosts)', '127.0.0.1')
    .option('-c, --config <file>', 'config file, to find the promoted index (default: refresh.config.ts)')
    .option('--env <name>', 'a named environment block of the config')
    .addHelpText(
      'after',
      '\nGET /search?q=fox&limit=10   hits as JSON\nGET /healthz                 200 when the index opens, a real query runs and the document\n                             count matches the snapshot manifest; 503 with the reason otherwise\n\nExamples:\n  refresh serve --port 8080\n  refresh serve --index .refresh/data/snapshots/snap-0001 --port 9000',
    )
    .action(async (options: ServeOptions) => {
      ctx.code = await serve(options, ctx.io)
    })
}

async function serve(options: ServeOptions, io: Io): Promise<number> {
  const port = Number(options.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(
      `--port ${options.port}: expected a port number from 0 to 65535 (for example --port 8080).`,
    )
  }
  const [{ createServer }, serving, { layout }, { readAlias }] = await Promise.all([
    import('node:http'),
    import('../../assets/serving.js'),
    import('../../assets/layout.js'),
    import('../../assets/state.js'),
  ])
  // which snapshot directory answers: fixed by --index, else the promoted one, read per request
  // so that a promotion (or a rollback) is served without a restart
  let indexDir: () => string
  let describe: string
  if (options.index) {
    const dir = resolve(io.cwd, options.index)
    try {
      serving.readServedManifest(dir) // fail at start-up, not at the first request
    } catch (cause) {
      throw new ConfigError(`--index ${options.index}: ${(cause as Error).message}`, { cause })
    }
    indexDir = () => dir
    describe = dir
  } else {
    const { findDataDir } = await import('../data-dir.js')
    const dataDir = await findDataDir(options, io.cwd)
    const paths = layout(dataDir)
    indexDir = () => {
      const alias = readAlias(paths)
      if (!alias) throw new Error(`nothing is promoted in ${dataDir} yet; run \`refresh run\`.`)
      return paths.snapshot(alias.current.snapshot)
    }
    describe = `the promoted index of ${dataDir}`
  }

  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
    res.end(`${JSON.stringify(body)}\n`)
  }
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://serve.local')
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'read-only: GET only' })
    if (url.pathname === '/healthz') {
      let health: ReturnType<typeof serving.checkSnapshotDir>
      try {
        health = serving.checkSnapshotDir(indexDir())
      } catch (error) {
        health = { ok: false, reason: error instanceof Error ? error.message : String(error) }
      }
      return health.ok
        ? send(res, 200, { status: 'ok', ...health })
        : send(res, 503, { status: 'fail', reason: health.reason })
    }
    if (url.pathname === '/search') {
      const q = url.searchParams.get('q') ?? ''
      const limit = Number(url.searchParams.get('limit') ?? '10')
      if (!q.trim()) return send(res, 400, { error: 'missing q: try /search?q=fox' })
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        return send(res, 400, { error: `limit ${url.searchParams.get('limit')}: expected 1 to 1000` })
      try {
        return send(res, 200, serving.searchSnapshotDir(indexDir(), q, limit))
      } catch (error) {
        return send(res, 503, { error: error instanceof Error ? error.message : String(error) })
      }
    }
    return send(res, 404, { error: `no ${url.pathname}; try /search?q=fox or /healthz` })
  }

  const server = createServer(handle)
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') {
        reject(
          new ConfigError(
            `port ${port} on ${options.host} is in use (another \`refresh serve\`?); pick a free one with --port, or --port 0 for any.`,
          ),
        )
      } else if (error.code === 'EACCES' || error.code === 'EADDRNOTAVAIL') {
        reject(
          new ConfigError(
            `cannot listen on ${options.host}:${port} (${error.code}); pick another --host or --port.`,
          ),
        )
      } else {
        reject(error)
      }
    })
    server.listen(port, options.host, () => resolveListen())
  })
  const address = server.address()
  const bound = typeof address === 'object' && address ? address.port : port
  const host = options.host.includes(':') ? `[${options.host}]` : options.host
  io.out(`serving ${describe} on http://${host}:${bound} (GET /search?q=, /healthz); Ctrl-C to stop`)
  await new Promise<void>((resolveStop) => {
    const stop = () => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      server.close(() => resolveStop())
      server.closeAllConnections()
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
  return EXIT.ok
}
