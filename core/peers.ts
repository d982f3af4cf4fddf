/**
 * Optional peer dependencies: packages only some backends need (the AWS SDK clients; the Postgres
 * driver), which a project installs itself when it chooses such a backend, as Dagster splits
 * `dagster-aws` and `dagster-postgres` out. A local setup then installs and loads none of them.
 * Choosing a backend whose package is missing is bad input: a `ConfigError` that names the
 * `npm install` to run, raised when the backend is made (so `refresh validate` and a run fail
 * before any step starts) and again if the package is imported anyway.
 */
import { createRequire } from 'node:module'
import { ConfigError } from './errors.js'

// resolves from this file, as the backends' `import()`s do: from where refresh is installed
const resolveFromHere = createRequire(import.meta.url).resolve

/** The error for a backend whose optional package is not installed; it names the package to install. */
export function missingPeerError(name: string, usedBy: string, cause?: unknown): ConfigError {
  return new ConfigError(
    `${usedBy} needs the package \`${name}\`, which is not installed. Install it in the project that runs refresh: \`npm install ${name}\` (refresh leaves it out of its own dependencies, so a setup that does not use it does not pay for it).`,
    cause === undefined ? undefined : { cause },
  )
}

/** True when `name` can be found from where refresh is installed. */
export function isPeerInstalled(name: string): boolean {
  try {
    resolveFromHere(name)
    return true
  } catch (error) {
    if (isNotFound(error, name)) return false
    throw error
  }
}

/** Throws `missingPeerError` unless `name` is installed; `usedBy` names what needs it (`ecsRunner({...})`). */
export function requirePeer(name: string, usedBy: string): void {
  try {
    resolveFromHere(name)
  } catch (error) {
    if (isNotFound(error, name)) throw missingPeerError(name, usedBy, error)
    throw error
  }
}

/** Imports an optional peer package (`load` is its `import()`), or throws `missingPeerError`. */
export async function importPeer<M>(name: string, usedBy: string, load: () => Promise<M>): Promise<M> {
  requirePeer(name, usedBy)
  return load()
}

/** The package itself is missing (not a file inside it, nor one of its own dependencies). */
function isNotFound(error: unknown, name: string): boolean {
  const e = error as { code?: unknown; message?: unknown }
  return (
    e?.code === 'MODULE_NOT_FOUND' &&
    typeof e.message === 'string' &&
    e.message.startsWith(`Cannot find module '${name}'`)
  )
}
