/**
 * A real S3-compatible server for tests (s3rver, on a free port over a temp directory). The SDK
 * reaches it through the standard `AWS_ENDPOINT_URL_S3` variable, as any refresh process would.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import S3rver from 's3rver'

export interface LocalS3 {
  endpoint: string
  /** The variables a process needs to talk to it (endpoint, dummy credentials, region). */
  env: Record<string, string>
  close(): Promise<void>
}

/**
 * Starts s3rver with the given buckets and sets its variables in this process's environment
 * (restored by `close`), so code under test and the processes it spawns use it.
 */
export async function startLocalS3(buckets: string[] = ['refresh-test']): Promise<LocalS3> {
  const directory = mkdtempSync(join(tmpdir(), 'refresh-s3-'))
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name, configs: [] })),
  })
  const address = (await server.run()) as { port: number }
  const endpoint = `http://127.0.0.1:${address.port}`
  const env: Record<string, string> = {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  }
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
  Object.assign(process.env, env)
  return {
    endpoint,
    env,
    async close() {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
      }
      await server.close()
      rmSync(directory, { recursive: true, force: true })
    },
  }
}
