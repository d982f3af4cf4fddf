/**
 * The public API of `refresh`. Everything a user imports is named here; nothing else is public.
 */

export { type Clock, ManualClock, systemClock } from './core/clock.js'
export {
  defineConfig,
  type EnvironmentConfig,
  type RefreshConfig,
  type ResolvedConfig,
  resolveEnvironment,
  validateConfig,
} from './core/config.js'
export {
  type AssetContext,
  type AssetDefinition,
  type AssetSpec,
  asset,
  DEFAULT_RETRY,
  isAssetDefinition,
  type LogLevel,
  type Metadata,
  type Resources,
  type RetryPolicy,
} from './core/definitions.js'
export {
  CanceledError,
  ConfigError,
  type ErrorInfo,
  GraphError,
  isRefreshError,
  NonRetriableError,
  RefreshError,
  RetryAfterError,
  SelectionError,
  StepTimeoutError,
  StoreError,
} from './core/errors.js'
export {
  RUN_EVENT_TYPES,
  type RunEvent,
  type RunEventListener,
  type RunEventMap,
  type RunEventOf,
  type RunEventType,
} from './core/events.js'
export { AssetGraph } from './core/graph.js'
export type { JsonObject, JsonValue } from './core/json.js'
export {
  buildGraph,
  type MaterializationResult,
  type MaterializeOptions,
  type MaterializeResult,
  materialize,
  type StepResult,
} from './core/materialize.js'
export { retryDelay } from './core/retry.js'
export { parseSelection, resolveSelection, type SelectionTerm } from './core/selection.js'
export { type OpenStoreOptions, openStore, type RecoveredRun, SqliteStore } from './core/store/sqlite.js'
export type {
  AttemptRecord,
  EventFilter,
  MaterializationRecord,
  RunFilter,
  RunRecord,
  RunStatus,
  StepRecord,
  StepStatus,
  StoredEvent,
} from './core/store/types.js'
