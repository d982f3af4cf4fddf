import type { RunEvent, RunEventListener } from './events.js'
import type { SqliteStore } from './store/sqlite.js'
import type { AttemptRecord, MaterializationRecord, WriteBatch } from './store/types.js'

type StepRow = WriteBatch['steps'][number]

/**
 * Sits between the executor and the store. Each emitted event goes to the listeners at once and
 * into a batch; step and attempt rows are coalesced (latest state wins). The batch is committed
 * in one transaction at the end of the current turn of the event loop, so a burst of events costs
 * one commit, and a step's success and its materialization always land together.
 */
export class RunRecorder {
  private events: RunEvent[] = []
  private steps = new Map<string, StepRow>()
  private attempts = new Map<string, AttemptRecord>()
  private materializations: Array<Omit<MaterializationRecord, 'id'>> = []
  private scheduled: NodeJS.Immediate | undefined
  /** The first error a listener threw; the run goes on and `materialize` reports it at the end. */
  listenerError: unknown
  /** The first error the store threw on a write; the executor cancels the run when it is set. */
  writeError: unknown
  onWriteError: ((error: unknown) => void) | undefined

  private readonly store: SqliteStore
  private readonly listeners: readonly RunEventListener[]

  constructor(store: SqliteStore, listeners: readonly RunEventListener[]) {
    this.store = store
    this.listeners = listeners
  }

  emit(event: RunEvent): void {
    this.events.push(event)
    for (const listener of this.listeners) {
      try {
        listener(event)
      } catch (error) {
        this.listenerError ??= error
      }
    }
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

  private schedule(): void {
    if (this.scheduled === undefined) this.scheduled = setImmediate(() => this.flushSafely())
  }

  private flushSafely(): void {
    try {
      this.flush()
    } catch (error) {
      if (this.writeError === undefined) {
        this.writeError = error
        this.onWriteError?.(error)
      }
    }
  }

  /** Commits everything pending now. Throws the store's error (the batch stays pending). */
  flush(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled)
      this.scheduled = undefined
    }
    const batch: WriteBatch = {
      events: this.events,
      steps: [...this.steps.values()],
      attempts: [...this.attempts.values()],
      materializations: this.materializations,
    }
    this.store.write(batch)
    this.events = []
    this.steps.clear()
    this.attempts.clear()
    this.materializations = []
  }
}
