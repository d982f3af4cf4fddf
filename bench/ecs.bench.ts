/**
 * The ECS runner at 1,000 ranges: one task per range on the test harness in simulated mode (no
 * processes: a task "runs" for 2 to 6 s, then its worker status says it succeeded). Reports the
 * AWS calls per task, DescribeTasks calls per poll, and the orchestrator's CPU and memory.
 * The harness lives with the tests (test/runners/ecs-harness.ts) and is loaded through jiti, so
 * that nothing from test/ is compiled into dist/.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createJiti } from 'jiti'
import { ecsRunner } from '../runners/ecs.js'
import { runUnits } from '../runners/run-units.js'

/** The part of the harness this bench uses (a type import would compile test/ into dist/). */
interface Harness {
  client: import('@aws-sdk/client-ecs').ECSClient
  calls: Record<string, number>
  tasks: Map<string, unknown>
  restore(): void
}
interface HarnessModule {
  EcsHarness: new (options: {
    stateDir: string
    mode: 'simulated'
    simulate(command: string[]): { ms: number; output: Record<string, unknown> }
  }) => Harness
  CLUSTER: string
  FAMILY: string
}

const RANGES = 1000
const POLL_MS = 500

export default async function bench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-ecs-bench-'))
  try {
    const jiti = createJiti(import.meta.url)
    const { EcsHarness, CLUSTER, FAMILY } = await jiti.import<HarnessModule>(
      join(import.meta.dirname, '..', '..', 'test', 'runners', 'ecs-harness.ts'),
    )
    // deterministic durations: 2 to 6 s, spread by range
    const harness = new EcsHarness({
      stateDir: join(dir, 'ecs'),
      mode: 'simulated',
      simulate: (command) => {
        const shard = (JSON.parse(command[1] ?? '{}') as { shard?: number }).shard ?? 0
        return { ms: 2000 + ((shard * 7919) % 4000), output: { shard, documents: 1000 } }
      },
    })
    const polls: Array<{ running: number; calls: number }> = []
    const runner = ecsRunner({
      cluster: CLUSTER,
      taskDefinition: FAMILY,
      statusDir: join(dir, 'status'),
      client: harness.client,
      launchType: 'FARGATE',
      pollIntervalMs: POLL_MS,
      onPoll: (p) => polls.push(p),
    })
    // load the SDK and warm up before measuring
    await runUnits(runner, [{ id: 'warm', task: 'index-shard', input: { shard: 0 }, runId: 'warm' }], {
      maxAttempts: 1,
      retryDelayMs: 0,
    })
    polls.length = 0
    for (const k of Object.keys(harness.calls)) delete harness.calls[k]
    const tasksBefore = harness.tasks.size

    const units = Array.from({ length: RANGES }, (_, shard) => ({
      id: `shard-${shard}`,
      task: 'index-shard',
      input: { shard },
      runId: 'bench-run',
      asset: 'reindex',
    }))
    const mem0 = process.memoryUsage()
    let peakRss = mem0.rss
    let peakHeap = mem0.heapUsed
    const sampler = setInterval(() => {
      const m = process.memoryUsage()
      peakRss = Math.max(peakRss, m.rss)
      peakHeap = Math.max(peakHeap, m.heapUsed)
    }, 50)
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    const outcomes = await runUnits(runner, units, { maxAttempts: 2, retryDelayMs: 100 })
    const wallMs = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    clearInterval(sampler)
    await runner.close()
    harness.restore()

    const ok = outcomes.filter((o) => o.output.documents === 1000).length
    const tasks = harness.tasks.size - tasksBefore
    const calls = harness.calls
    const total = Object.values(calls).reduce((a, b) => a + b, 0)
    const worst = polls.reduce(
      (w, p) => (p.calls > w.calls || (p.calls === w.calls && p.running > w.running) ? p : w),
      { running: 0, calls: 0 },
    )
    const overBudget = polls.filter((p) => p.calls > Math.ceil(p.running / 100)).length
    const cpuMs = (cpu.user + cpu.system) / 1000
    const mib = (b: number) => (b / 2 ** 20).toFixed(1)
    const f = (n: number, d = 0) =>
      n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
    const rssGrowth = (peakRss - mem0.rss) / 2 ** 20
    return {
      title: 'ECS runner: 1,000 ranges on the ECS harness',
      body: `${f(RANGES)} ranges, one ECS task each, all started at once through \`runUnits\` on \`ecsRunner\`
(Fargate, poll every ${POLL_MS} ms) against the test harness in simulated mode: each task runs 2 to 6 s
and its worker status file reports success; no process is started. The harness answers in the same
process, so CPU and memory below include it (an upper bound for the orchestrator).

| measure | result | target |
|---|---:|---:|
| ranges succeeded | ${f(ok)} of ${f(RANGES)} (${f(tasks)} tasks) | all |
| wall time (longest task 6 s) | ${f(wallMs / 1000, 1)} s | - |
| AWS calls per task (all actions) | ${f(total / tasks, 2)} | - |
| RunTask / DescribeTasks / DescribeTaskDefinition / StopTask calls | ${calls.RunTask ?? 0} / ${calls.DescribeTasks ?? 0} / ${calls.DescribeTaskDefinition ?? 0} / ${calls.StopTask ?? 0} | - |
| polls; DescribeTasks calls in the busiest poll | ${f(polls.length)}; ${worst.calls} for ${f(worst.running)} running tasks | <= ceil(running/100) = ${Math.ceil(worst.running / 100)} |
| polls over the ceil(running/100) budget | ${overBudget} | 0 |
| orchestrator CPU | ${f(cpuMs)} ms (${f((100 * cpuMs) / wallMs, 1)} % of one core) | - |
| orchestrator memory growth (peak RSS - RSS before) | ${rssGrowth.toFixed(1)} MiB (heap peak ${mib(peakHeap)} MiB, RSS peak ${mib(peakRss)} MiB) | under 50 MB: ${rssGrowth < 50 ? 'met' : 'NOT met'} |

One RunTask per task (no capacity failures here; each one adds a RunTask), one DescribeTaskDefinition
for the whole step (the pinned revision), and DescribeTasks in batches of 100 per poll, so the
status calls per task are about (polls while it runs) / 100. Not measured here: a real reindex
with the statuses and the shard data in S3 (\`statusUrl\`, reindex \`transfer\`), which the ECS and
EC2 runner tests run at 8 shards against a local S3 server.`,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
