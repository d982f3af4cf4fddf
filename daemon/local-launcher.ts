import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { LaunchedRun, LaunchRequest, RunLauncher } from '../core/launcher.js'

/** The CLI entry point a launched run executes (`refresh launch RUN_ID`). */
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))

/**
 * The default run launcher: each run in its own local process (`refresh launch RUN_ID`), so that a
 * crashing asset cannot take the daemon down. The store reaches the process in `REFRESH_STORE`,
 * not on its command line, where any user of the host could read a password in it (`ps`).
 */
export function localRunLauncher(): RunLauncher {
  return {
    kind: 'local',
    remote: false,
    launch: launchLocal,
    close: async () => {},
  }
}

function launchLocal(request: LaunchRequest): LaunchedRun {
  // argument arrays only: no shell
  const args = [CLI, 'launch', request.run.id, '--config', request.configFile]
  if (request.environment !== undefined) args.push('--env', request.environment)
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, REFRESH_STORE: request.storeLocation },
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000)
  })
  return {
    pid: child.pid,
    exited: new Promise((done) => {
      child.on('close', (code, signal) => done({ code, signal, stderr }))
      child.on('error', (error) => done({ code: null, signal: null, stderr: String(error) }))
    }),
    kill: (signal) => {
      // a process that has exited (or never started) has nothing left to stop
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    },
  }
}
