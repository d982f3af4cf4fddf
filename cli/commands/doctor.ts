import { accessSync, constants, mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import type { DoctorCheck } from '../../aws/doctor.js'
import { addConfigOptions, type ConfigOptions, loadResolved, requireAwsReady } from '../config-options.js'
import { DEFAULT_STORE } from '../find-config.js'
import { type CliContext, EXIT, type Io } from '../io.js'

interface DoctorOptions extends ConfigOptions {
  json?: boolean
}

export function registerDoctor(program: Command, ctx: CliContext): void {
  addConfigOptions(
    program
      .command('doctor')
      .description('check that this host can run the refresh: one line per check, ok or FAIL with the fix'),
  )
    .option('--json', 'the checks as one JSON array')
    .addHelpText(
      'after',
      `
Without --env: Node, SQLite with FTS5, the store and the data directory.
With an environment that has AWS settings (the default config's \`aws\`): credentials and region,
the S3 bucket (HeadBucket), the ECS cluster and task definition, the EBS volume, the launch
templates, and the EC2 permissions to snapshot, launch and terminate (DryRun: nothing is created).

Exit code 0 when every check passes, 1 when one fails, 2 on bad input.

Examples:
  refresh doctor
  refresh doctor --env aws`,
    )
    .action(async (options: DoctorOptions) => {
      ctx.code = await doctor(options, ctx.io)
    })
}

async function doctor(options: DoctorOptions, io: Io): Promise<number> {
  const { loaded, resolved } = await loadResolved(options, io.cwd)
  // no region: every AWS check would fail alike, each with a wrong fix; one paragraph, exit 2
  await requireAwsReady(resolved)
  const { settingsOf } = await import('../../aws/settings.js')
  const aws = settingsOf(resolved.resources)
  const checks: DoctorCheck[] = await localChecks(
    resolve(loaded.dir, resolved.store ?? DEFAULT_STORE),
    resolved,
  )
  if (!aws && options.env !== undefined) {
    checks.push({
      name: 'aws',
      status: 'skip',
      detail: `environment \`${options.env}\` has no AWS settings (\`resources: { aws: awsSettings() }\`, as in the default refresh.config.ts)`,
    })
  }
  if (aws) {
    const { awsDoctor } = await import('../../aws/doctor.js')
    checks.push(...(await awsDoctor(aws)))
  }
  if (options.json) {
    io.out(JSON.stringify(checks))
  } else {
    const width = Math.max(...checks.map((c) => c.name.length))
    for (const c of checks) {
      const mark = c.status === 'ok' ? 'ok  ' : c.status === 'skip' ? 'skip' : 'FAIL'
      io.out(
        `${mark}  ${c.name.padEnd(width)}  ${c.detail}${c.fix ? `\n${' '.repeat(width + 8)}fix: ${c.fix}` : ''}`,
      )
    }
    const failed = checks.filter((c) => c.status === 'fail').length
    io.out(
      failed === 0 ? `all ${checks.length} checks passed` : `${failed} of ${checks.length} checks failed`,
    )
  }
  return checks.some((c) => c.status === 'fail') ? EXIT.failed : EXIT.ok
}

/** Checks of this host: Node, SQLite with FTS5, the store's directory, the data directories. */
async function localChecks(
  storePath: string,
  resolved: { assets: Array<{ tags: Record<string, string> }> },
): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = []
  const major = Number(process.versions.node.split('.')[0])
  checks.push(
    major >= 20
      ? { name: 'node', status: 'ok', detail: process.versions.node }
      : { name: 'node', status: 'fail', detail: process.versions.node, fix: 'install Node 20 or newer.' },
  )
  checks.push(await sqliteCheck())
  checks.push(writableCheck('store directory', resolve(storePath, '..')))
  const dirs = new Set(resolved.assets.map((a) => a.tags.dataDir).filter((d): d is string => Boolean(d)))
  for (const dir of dirs) checks.push(writableCheck('data directory', dir))
  return checks
}

/** The store and the index both need SQLite with FTS5: open one in memory and make an FTS5 table. */
async function sqliteCheck(): Promise<DoctorCheck> {
  try {
    const { default: Database } = await import('better-sqlite3')
    const db = new Database(':memory:')
    try {
      db.exec(
        "CREATE VIRTUAL TABLE t USING fts5(x); INSERT INTO t VALUES ('fox'); SELECT * FROM t WHERE t MATCH 'fox'",
      )
      const { v } = db.prepare('SELECT sqlite_version() AS v').get() as { v: string }
      return { name: 'sqlite', status: 'ok', detail: `${v} with FTS5` }
    } finally {
      db.close()
    }
  } catch (error) {
    return {
      name: 'sqlite',
      status: 'fail',
      detail: (error as Error).message,
      fix: 'reinstall better-sqlite3 for this Node version (`npm rebuild better-sqlite3`).',
    }
  }
}

function writableCheck(name: string, dir: string): DoctorCheck {
  try {
    mkdirSync(dir, { recursive: true })
    accessSync(dir, constants.W_OK)
    return { name, status: 'ok', detail: `${dir} is writable` }
  } catch (error) {
    return {
      name,
      status: 'fail',
      detail: `${dir}: ${(error as Error).message}`,
      fix: 'make it writable, or point the config at another directory.',
    }
  }
}
