/**
 * Helpers of the tests of refresh as a package: its manifests, and the package as a user installs
 * it (`npm pack` of this repository's built dist/, installed from the tarball into a fresh project
 * in a temp directory, next to packages from the registry).
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { type Exec, exec, ROOT } from '../helpers.js'

/** Runs a program (no shell) without colours; the default time limit suits npm. */
export function command(
  program: string,
  args: readonly string[],
  options: { cwd: string; timeoutMs?: number },
): Promise<Exec> {
  return exec(program, [...args], {
    cwd: options.cwd,
    env: { NO_COLOR: '1' },
    timeoutMs: options.timeoutMs ?? 60_000,
  })
}

/** Runs a command that must succeed; throws with its output otherwise. */
async function mustRun(
  program: string,
  args: readonly string[],
  options: { cwd: string; timeoutMs: number },
) {
  const result = await command(program, args, options)
  if (result.code !== 0) {
    throw new Error(
      `${program} ${args.join(' ')} exited ${result.code} in ${options.cwd}\n${result.stdout}\n${result.stderr}`,
    )
  }
}

/** A user's project in a temp directory, with refresh installed from the tarball. */
export interface UserProject {
  dir: string
  write(name: string, text: string): void
  /** The installed `refresh` bin (node_modules/.bin/refresh) in the project directory. */
  refresh(...args: string[]): Promise<Exec>
  /** This repository's TypeScript compiler on the project's tsconfig.json. */
  tsc(): Promise<Exec>
}

export interface PackedRepo {
  /** The tarball `npm pack` wrote. */
  tarball(): string
  /**
   * A fresh project: the tarball and `packages` from the registry, installed as a user would,
   * except that install scripts are skipped (better-sqlite3's native build is not needed to type,
   * load or validate a config) so that it stays quick.
   */
  install(packages: readonly string[]): Promise<UserProject>
}

/**
 * Packs the repository once for the test file (in its beforeAll; dist/ must be current: `npm test`
 * builds first, and scripts are skipped so packing does not build again), and removes the tarball
 * and every project made from it in its afterAll.
 */
export function packedRepo(): PackedRepo {
  let root: string | undefined
  let tarball: string | undefined
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'refresh-pack-'))
    await mustRun('npm', ['pack', '--ignore-scripts', '--pack-destination', root], {
      cwd: ROOT,
      timeoutMs: 120_000,
    })
    const name = readdirSync(root).find((file) => file.endsWith('.tgz'))
    if (!name) throw new Error(`npm pack wrote no tarball into ${root}`)
    tarball = join(root, name)
  }, 180_000)
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true })
  })
  const packed = () => {
    if (!root || !tarball)
      throw new Error('the repository is packed in beforeAll: install projects in hooks or tests')
    return { root, tarball }
  }
  return {
    tarball: () => packed().tarball,
    async install(packages) {
      const { root, tarball } = packed()
      const dir = mkdtempSync(join(root, 'project-'))
      const write = (name: string, text: string) => writeFileSync(join(dir, name), text)
      write(
        'package.json',
        `${JSON.stringify({ name: 'refresh-user', private: true, type: 'module' }, null, 2)}\n`,
      )
      await mustRun(
        'npm',
        ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', tarball, ...packages],
        { cwd: dir, timeoutMs: 300_000 },
      )
      return {
        dir,
        write,
        refresh: (...args) => command(join(dir, 'node_modules/.bin/refresh'), args, { cwd: dir }),
        tsc: () => command(process.execPath, [TSC, '-p', dir], { cwd: dir, timeoutMs: 120_000 }),
      }
    },
  }
}

/** The strict compiler options of a user's Node project. */
export function tsconfig(options: { skipLibCheck: boolean }): string {
  return `${JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        skipLibCheck: options.skipLibCheck,
        types: ['node'],
      },
      include: ['*.ts'],
    },
    null,
    2,
  )}\n`
}

const TSC = join(ROOT, 'node_modules/typescript/bin/tsc')

/** `@types/node` of the Node major this repository targets, as a user's project has it. */
export const NODE_TYPES = '@types/node@20'
