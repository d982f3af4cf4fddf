import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { NODE_TYPES, packedRepo, tsconfig, type UserProject } from './packed.js'

/**
 * refresh as a local user installs it: the packed tarball with its required peer (zod) and
 * nothing else, in a fresh strict TypeScript project. The AWS SDK clients are optional peers, so
 * they are not there; an AWS backend must then say which package to install.
 */

const AWS_SDK = [
  '@aws-sdk/client-s3',
  '@aws-sdk/client-ecs',
  '@aws-sdk/client-ec2',
  '@aws-sdk/client-elastic-load-balancing-v2',
]

const repo = packedRepo()
let project: UserProject
beforeAll(async () => {
  project = await repo.install(['zod', NODE_TYPES])
}, 360_000)

describe('the package', () => {
  it('ships its license, and lists zod as a peer and the AWS SDK clients as optional peers', () => {
    const files = execFileSync('tar', ['-tzf', repo.tarball()], { encoding: 'utf8' }).split('\n')
    expect(files).toContain('package/LICENSE')
    const installed = join(project.dir, 'node_modules/refresh')
    expect(readFileSync(join(installed, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n/)
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'))
    expect(manifest.dependencies).not.toHaveProperty('zod')
    expect(manifest.peerDependencies.zod).toBe('^3.25.0 || ^4.0.0')
    for (const name of AWS_SDK) {
      expect(manifest.dependencies).not.toHaveProperty(name)
      expect(manifest.peerDependenciesMeta[name]).toEqual({ optional: true })
    }
  })

  it('installs no AWS SDK for a local user', () => {
    expect(existsSync(join(project.dir, 'node_modules/refresh'))).toBe(true)
    expect(existsSync(join(project.dir, 'node_modules/@aws-sdk'))).toBe(false)
    expect(existsSync(join(project.dir, 'node_modules/@smithy'))).toBe(false)
  })
})

describe('the public types', () => {
  it('compile in a fresh strict project (skipLibCheck: false) with only refresh and its peers', async () => {
    project.write('tsconfig.json', tsconfig({ skipLibCheck: false }))
    project.write(
      'refresh.config.ts',
      `import { asset, defineConfig, ecsRunner, materialize, reindex } from 'refresh'
import { z } from 'zod'

const source = asset({
  key: 'source',
  config: z.object({ rows: z.number().int().default(3) }),
  materialize: (ctx) => ({ rows: ctx.config.rows }),
})
// an AWS backend's options type-check without the AWS SDK installed
const remote = () => reindex({ runner: ecsRunner({ cluster: 'c', taskDefinition: 't', launchType: 'FARGATE' }) })
export const run = () => materialize([source])
export default defineConfig({ assets: [source], environments: { aws: () => ({ assets: [source, remote()] }) } })
`,
    )
    const result = await project.tsc()
    expect(result.stdout + result.stderr).toBe('')
    expect(result.code).toBe(0)
  })
})

describe('an AWS backend without its SDK package', () => {
  it('is refused when the config chooses it (exit 2), naming the package to install', async () => {
    project.write(
      'refresh.config.ts',
      `import { asset, defineConfig, ecsRunner, reindex } from 'refresh'
const clean = asset({ key: 'clean', materialize: () => ({}) })
export default defineConfig({
  assets: [clean],
  environments: {
    aws: () => ({ assets: [clean, reindex({ runner: ecsRunner({ cluster: 'c', taskDefinition: 't', statusDir: '/tmp' }) })] }),
  },
})
`,
    )
    expect((await project.refresh('validate')).code).toBe(0)
    const result = await project.refresh('run', '--env', 'aws', '--dry-run')
    expect(result.code).toBe(2)
    expect(result.stderr).toContain(
      'AWS ECS for ecsRunner({...}) needs the package `@aws-sdk/client-ecs`, which is not installed. Install it in the project that runs refresh: `npm install @aws-sdk/client-ecs`',
    )
    expect(result.stderr).not.toContain('    at ')
  })

  it('fails the worker as bad input (exit 2) when its status goes to S3', async () => {
    const input = JSON.stringify({ source: 'clean.db', table: 't', lo: 1, hi: 2, output: 'o.db', shard: 0 })
    const result = await project.refresh(
      'worker',
      'index-shard',
      input,
      '--status-file',
      's3://bucket/status.json',
    )
    expect(result.code).toBe(2)
    expect(result.stdout).toContain('needs the package `@aws-sdk/client-s3`')
    expect(result.stdout).toContain('`npm install @aws-sdk/client-s3`')
  })

  it('is listed by `refresh doctor --env aws` with the npm install to run', async () => {
    project.write(
      'refresh.config.ts',
      `import { asset, defineConfig } from 'refresh'
const clean = asset({ key: 'clean', materialize: () => ({}) })
export default defineConfig({ assets: [clean], environments: { aws: { resources: { aws: { bucket: 'acme' } } } } })
`,
    )
    const result = await project.refresh('doctor', '--env', 'aws', '--json')
    expect(result.code).toBe(1)
    const checks = JSON.parse(result.stdout) as Array<{ name: string; status: string; fix?: string }>
    expect(checks.find((c) => c.name === 'aws sdk')).toEqual({
      name: 'aws sdk',
      status: 'fail',
      detail:
        'not installed: @aws-sdk/client-s3, @aws-sdk/client-ecs, @aws-sdk/client-ec2 (optional peer dependencies of refresh)',
      fix: 'npm install @aws-sdk/client-s3 @aws-sdk/client-ecs @aws-sdk/client-ec2',
    })
  })
})
