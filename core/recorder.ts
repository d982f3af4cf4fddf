import type { RunEvent, RunEventListener } from './events.js'
import type { ExecutorStore } from './store/run-store.js'
import type { AttemptRecord, CheckResultRecord, MaterializationRecord, WriteBatch } from './store/types.js'

type StepRow = WriteBatch['steps'][number]

/**
 * Sits between the executor and the store. Emitted events, step and attempt rows (coalesced:
 * latest state wins) and materializations gather into a batch that is committed in one
 * transaction at the end of the current turn of the event loop, so a burst of events costs one
 * commit and a step's success and its materialization always land together (and a check's result
 * with the event that announces it). Listeners (the
 * views, the reporters) get each event once the batch that holds it is committed: nothing is
 * shown as done before it is durable. One write is in flight at a time; what is emitted meanwhile
 * goes into the next batch.
 */
export class RunRecorder {
  private events: RunEvent[] = []
  private steps = new Map<string, StepRow>()
  private attempts = new Map<string, AttemptRecord>()
  private materializations: Array<Omit<MaterializationRecord, 'id'>> = []
  private checks: Array<Omit<CheckResultRecord, 'id'>> = []
  private scheduled: NodeJS.Immediate | undefined
  private writing: Promise<void> | undefined
  /** The first error a listener threw; the run goes on and `materialize` reports it at the end. */
  listenerError: unknown
  /** The first error the store threw on a write; the executor cancels the run when it is set. */
  writeError: unknown
  onWriteError: ((error: unknown) => void) | undefined

  private readonly store: Pick<ExecutorStore, 'write'>
  private readonly listeners: readonly RunEventListener[]

  constructor(store: Pick<ExecutorStore, 'write'>, listeners: readonly RunEventListener[]) {
    this.store = store
    this.listeners = listeners
  }

  emit(event: RunEvent): void {
    this.events.push(event)
    this.schedule()
  }

  step(row: StepRow): void {
    this.steps.set(row.key, { ...row })
    this.schedule()
  }

  attempt(row: AttemptRecord): void {
    this.attempts.set(`${row.step}\u0000${row.attempt}`, { ...row })
    this.schedule()
  }

  materialization(row: Omit<MaterializationRecord, 'id'>): void {
    this.materializations.push(row)
    this.schedule()
  }

  check(row: Omit<CheckResultRecord, 'id'>): void {
    this.checks.push(row)
    this.schedule()
  }

  private get empty(): boolean {
    return (
      this.events.length === 0 &&
      this.steps.size === 0 &&
      this.attempts.size === 0 &&
      this.materializations.length === 0 &&
      this.checks.length === 0
    )
  }

  private schedule(): void {
    if (this.scheduled === undefined && this.writing === undefined) {
      this.scheduled = setImmediate(() => {
        this.scheduled = undefined
        this.flush().catch(() => {
          // recorded in writeError and reported through onWriteError by flush itself
        })
      })
    }
  }

  /**
   * Commits everything emitted so far, then hands its events to the listeners. Rejects with the
   * store's error (the batch stays pending, to be written by a later flush).
   */
  async flush(): Promise<void> {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled)
      this.scheduled = undefined
    }
    // one write at a time, in order: wait for the one in flight, then write what came since
    while (this.writing !== undefined) await this.writing.catch(() => {})
    if (this.empty) return
    const batch: WriteBatch = {
      events: this.events,
      steps: [...this.steps.values()],
      attempts: [...this.attempts.values()],
      materializations: this.materializations,
      checks: this.checks,
    }
    this.events = []
    this.steps = new Map()
    this.attempts = new Map()
    this.materializations = []
    this.checks = []
    const writing = this.store.write(batch)
    this.writing = writing
    try {
      await writing
    } catch (error) {
      this.requeue(batch)
      if (this.writeError === undefined) {
        this.writeError = error
        this.onWriteError?.(error)
      }
      throw error
    } finally {
      this.writing = undefined
    }
    this.deliver(batch.events)
    if (!this.empty) this.schedule()
  }

  /** A failed batch goes back in front of what was emitted since, so no write is lost or reordered. */
  private requeue(batch: WriteBatch): void {
    this.events = [...batch.events, ...this.events]
    const steps = new Map(batch.steps.map((s) => [s.key, s]))
    for (const [key, row] of this.steps) steps.set(key, row)
    this.steps = steps
    const attempts = new Map(batch.attempts.map((a) => [`${a.step}\u0000${a.attempt}`, a]))
    for (const [key, row] of this.attempts) attempts.set(key, row)
    this.attempts = attempts
    this.materializations = [...batch.materializations, ...this.materializations]
    this.checks = [...(batch.checks ?? []), ...this.checks]
  }

  private deliver(events: readonly RunEvent[]): void {
    if (this.listeners.length === 0) return
    for (const event of events) {
      for (const listener of this.listeners) {
        try {
          listener(event)
        } catch (error) {
          this.listenerError ??= error
        }
      }
    }
  }
}
