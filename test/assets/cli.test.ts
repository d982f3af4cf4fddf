import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, run, tempDir } from '../helpers.js'

/** A config outside the project that imports the blocks from 'refresh', as a user's would. */
const CONFIG = `import { catalog, clean, copy, defineConfig, localProcessRunner, promote, reindex, replicas, snapshot } from 'refresh'

const dataDir = new URL('./state/', import.meta.url)
export default defineConfig({
  assets: [
    catalog({ dataDir }),
    copy({ dataDir }),
    clean({ dataDir }),
    reindex({ dataDir, shards: 2, runner: localProcessRunner({ processes: 2 }) }),
    snapshot({ dataDir }),
    replicas({ dataDir }),
    promote({ dataDir }),
  ],
  config: { catalog: { rows: 2000 } },
})
`

describe('refresh run, query and promote --rollback through the real CLI', () => {
  it('runs the whole refresh, finds hits, and rolls back after a second run', async () => {
    const cwd = tempDir()
    writeFileSync(join(cwd, 'refresh.config.ts'), CONFIG)

    const empty = await run([CLI, 'query', 'fox'], { cwd })
    expect(empty.code).toBe(2)
    expect(empty.stderr).toMatch(/nothing is promoted in .*state yet; run `refresh run`/)

    const first = await run([CLI, 'run', '--plain'], { cwd })
    expect(first.stderr).toBe('')
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/promote\s+succeeded/)
    expect(existsSync(join(cwd, 'state', 'current.json'))).toBe(true)

    const query = await run([CLI, 'query', 'fox', '--limit', '3'], { cwd })
    expect(query.code).toBe(0)
    expect(query.stdout).toMatch(
      /^index idx-\w+ \(snapshot snap-\w+, \d+ documents\) via replica replica-1$/m,
    )
    expect(query.stdout).toMatch(/^3 hits for "fox"/m)

    const noPrevious = await run([CLI, 'promote', '--rollback'], { cwd })
    expect(noPrevious.code).toBe(2)
    expect(noPrevious.stderr).toMatch(/has no previous index to roll back to/)

    const second = await run([CLI, 'run', '--plain'], { cwd })
    expect(second.code).toBe(0)
    const shown = await run([CLI, 'promote'], { cwd })
    expect(shown.stdout).toMatch(/^current: +idx-\w+/m)
    expect(shown.stdout).toMatch(/^previous: +idx-\w+/m)

    const back = await run([CLI, 'promote', '--rollback'], { cwd })
    expect(back.code).toBe(0)
    expect(back.stdout).toMatch(/^rolled back: current -> idx-\w+ \(snapshot snap-\w+\), was idx-\w+$/m)
    expect(back.stdout).toMatch(/replicas now serving snap-\w+: replica-1, replica-2/)

    const badLimit = await run([CLI, 'query', 'fox', '--limit', 'lots'], { cwd })
    expect(badLimit.code).toBe(2)
    expect(badLimit.stderr).toMatch(/--limit lots: expected a whole number/)
  }, 60_000)
})
