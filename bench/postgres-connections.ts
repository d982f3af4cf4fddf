/**
 * Who holds connections to a PostgreSQL server, sampled while a benchmark runs: the server's own
 * view (`pg_stat_activity`, by `application_name`) and, for the processes of this benchmark (this
 * process and its descendants), connections per process: each client backend's port is matched
 * to the process whose socket has it, through /proc (Linux).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import pg from 'pg'

export interface ConnectionPeaks {
  /** Most connections seen at once per `application_name` (the sampler's own left out). */
  byApplication: Map<string, number>
  /** Most connections seen at once per process (pid), with its command line. */
  byProcess: Map<number, { peak: number; command: string }>
  /** Most client connections seen at once on the server in all. */
  total: number
  samples: number
}

const SAMPLER = 'refresh-bench-sampler'

/** Samples every `everyMs` until `stop()`, which resolves with the peaks seen. */
export async function sampleConnections(
  url: string,
  everyMs = 100,
): Promise<{ stop(): Promise<ConnectionPeaks> }> {
  const target = new URL(url)
  const port = Number(target.port || 5432)
  target.searchParams.delete('schema')
  const client = new pg.Client({ connectionString: target.toString(), application_name: SAMPLER })
  client.on('error', () => {})
  await client.connect()
  const peaks: ConnectionPeaks = { byApplication: new Map(), byProcess: new Map(), total: 0, samples: 0 }
  let stopped = false
  const sample = async () => {
    const { rows } = await client.query<{ application_name: string; client_port: number | null }>(
      `SELECT application_name, client_port FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND application_name <> $1`,
      [SAMPLER],
    )
    peaks.samples++
    peaks.total = Math.max(peaks.total, rows.length)
    const apps = new Map<string, number>()
    for (const r of rows) apps.set(r.application_name, (apps.get(r.application_name) ?? 0) + 1)
    for (const [app, n] of apps) peaks.byApplication.set(app, Math.max(peaks.byApplication.get(app) ?? 0, n))
    const owners = socketOwners(port)
    const perPid = new Map<number, number>()
    for (const r of rows) {
      const pid = r.client_port === null ? undefined : owners.get(r.client_port)
      if (pid !== undefined) perPid.set(pid, (perPid.get(pid) ?? 0) + 1)
    }
    for (const [pid, n] of perPid) {
      const seen = peaks.byProcess.get(pid)
      if (seen) seen.peak = Math.max(seen.peak, n)
      else peaks.byProcess.set(pid, { peak: n, command: commandOf(pid) })
    }
  }
  const loop = (async () => {
    while (!stopped) {
      await sample().catch(() => {})
      await new Promise((r) => setTimeout(r, everyMs))
    }
  })()
  return {
    async stop() {
      stopped = true
      await loop
      await client.end().catch(() => {})
      return peaks
    },
  }
}

/** Local TCP port → pid, for the sockets of this process and its descendants connected to `serverPort`. */
function socketOwners(serverPort: number): Map<number, number> {
  const byInode = new Map<string, number>()
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 10) continue
    const local = Number.parseInt(f[1]!.split(':')[1]!, 16)
    const remote = Number.parseInt(f[2]!.split(':')[1]!, 16)
    if (remote === serverPort) byInode.set(f[9]!, local)
  }
  const out = new Map<number, number>()
  for (const pid of descendants(process.pid)) {
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue // gone meanwhile
    }
    for (const fd of fds) {
      let link: string
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`)
      } catch {
        continue
      }
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1]
      const local = inode === undefined ? undefined : byInode.get(inode)
      if (local !== undefined) out.set(local, pid)
    }
  }
  return out
}

/** A process and all its descendants (from /proc/PID/task/TID/children). */
function descendants(root: number): number[] {
  const out: number[] = []
  const queue = [root]
  while (queue.length > 0) {
    const pid = queue.pop()!
    out.push(pid)
    let tasks: string[]
    try {
      tasks = readdirSync(`/proc/${pid}/task`)
    } catch {
      continue
    }
    for (const tid of tasks) {
      try {
        const children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim()
        if (children) queue.push(...children.split(' ').map(Number))
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return out
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ')
  } catch {
    return '?'
  }
}
