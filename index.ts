/**
 * The public API of `refresh`. Everything a user imports is named here; nothing else is public.
 */

export type {
  AliasStore,
  BackendContext,
  FleetRollout,
  ReplicaFleet,
  RolloutTarget,
  SnapshotBackend,
  SnapshotInput,
} from './assets/backends.js'
export { catalog, type ExportCatalogOptions, exportCatalog } from './assets/catalog.js'
export {
  type IndexCheckOptions,
  type IndexCountWithinOptions,
  indexCountWithin,
  indexNotEmpty,
  snapshotVerifies,
} from './assets/checks.js'
export {
  type CleanOptions,
  type CleanRowsResult,
  type CleanRule,
  clean,
  cleanRows,
  cleanRuleSchema,
  mediaRules,
  type Row,
  type RuleCount,
} from './assets/clean.js'
export { type CopyOptions, type CopyResult, copy, copyRows } from './assets/copy.js'
export { type EbsSnapshotBackend, type EbsSnapshotsOptions, ebsSnapshots } from './assets/ebs.js'
export { type Ec2ReplicasOptions, ec2Replicas } from './assets/ec2-replicas.js'
export { type BlockOptions, DEFAULT_DATA_DIR } from './assets/layout.js'
export {
  cleanPostgresTable,
  type PostgresCleanOptions,
  type PostgresCleanResult,
} from './assets/postgres-clean.js'
export {
  copyPostgresTable,
  type PostgresCopyOptions,
  type PostgresCopyProgress,
  type PostgresCopyResult,
} from './assets/postgres-copy.js'
export {
  type PostgresCleanBlock,
  type PostgresCopyBlock,
  type PostgresSettings,
  postgresSettings,
  runTable,
} from './assets/postgres-refresh.js'
export {
  type PromoteTableOptions,
  promoteTable,
  promoteTableNow,
  rollbackTable,
  type TablePromotion,
  type TablePromotionResult,
  type TableRollbackResult,
  type TableTarget,
  tableVersions,
} from './assets/postgres-table.js'
export {
  aliasStoreFor,
  type PromoteOptions,
  promote,
  type RollbackOptions,
  rollbackPromotion,
} from './assets/promote.js'
export { type ReindexOptions, reindex } from './assets/reindex.js'
export { localReplicas, type ReplicasOptions, replicas } from './assets/replicas.js'
export { s3AliasStore } from './assets/s3-alias.js'
export { type ColumnInfo, type TableSchema, tableSchema } from './assets/schema.js'
export { type HitFields, type SearchHit, type SearchResult, searchPromoted } from './assets/search.js'
export { publishSnapshot, type SnapshotOptions, snapshot } from './assets/snapshot.js'
export { fileAliasStore } from './assets/state.js'
export { type S3Location, S3Store, s3Location } from './aws/s3.js'
export {
  AwsCallError,
  type AwsCallOptions,
  type AwsErrorKind,
  classifyAwsError,
  TAG,
} from './aws/service.js'
export { AWS_VARIABLES, type AwsSettings, awsSettings } from './aws/settings.js'
export type { AutomationCondition } from './core/automation.js'
export {
  type AdvanceOptions,
  type AdvanceResult,
  advanceBackfill,
  BACKFILL_TAG,
  type BackfillProgress,
  type BackfillRequest,
  backfillProgress,
  cancelBackfill,
  requestBackfill,
  retryBackfill,
} from './core/backfills.js'
export {
  type AssetCheckSpec,
  assetCheck,
  type CheckContext,
  type CheckDefinition,
  type CheckOutcome,
  type CheckSeverity,
} from './core/checks.js'
export { type Clock, ManualClock, systemClock } from './core/clock.js'
export {
  type AlertEvent,
  type AlertsConfig,
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
  type ErrorCode,
  type ErrorInfo,
  errorCode,
  GraphError,
  GuardBusyError,
  isInputError,
  isRefreshError,
  NonRetriableError,
  RefreshError,
  RetryAfterError,
  RunParkedError,
  SelectionError,
  StepTimeoutError,
  StoreBusyError,
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
export {
  assetFreshness,
  type Freshness,
  type FreshnessPolicy,
  type FreshnessState,
} from './core/freshness.js'
export { AssetGraph } from './core/graph.js'
export { holdsFor, type RunGuardConfig } from './core/guards.js'
export type { JsonObject, JsonValue } from './core/json.js'
export type { LaunchExit, LaunchedRun, LaunchRequest, RunLauncher } from './core/launcher.js'
export {
  buildGraph,
  type CheckResult,
  type MaterializationResult,
  type MaterializeOptions,
  type MaterializeResult,
  materialize,
  type StepResult,
} from './core/materialize.js'
export { partitionsContext, type RunPartition } from './core/partition-runs.js'
export {
  PARTITION_STATUSES,
  type PartitionStatus,
  type PartitionStatusName,
  partitionStatus,
} from './core/partition-status.js'
export {
  type DynamicPartitionsLookup,
  isPartitionsDefinition,
  type KeySpace,
  type ParsedPartitionKey,
  type PartitionContext,
  type PartitionsContext,
  type PartitionsDefinition,
  type TimeWindow,
} from './core/partitions/definitions.js'
export { PartitionKeyError } from './core/partitions/errors.js'
export {
  allPartitionsMapping,
  defaultMapping,
  identityMapping,
  isPartitionMapping,
  lastPartitionMapping,
  type MultiToSingleDimensionMappingOptions,
  multiPartitionMapping,
  multiToSingleDimensionMapping,
  type PartitionedAsset,
  type PartitionMapping,
  type PartitionsSide,
  resolvePartitionMapping,
  staticMapping,
  type TimeWindowMappingOptions,
  timeWindowMapping,
} from './core/partitions/mapping.js'
export {
  type DimensionDefinition,
  MultiPartitionsDefinition,
  multiPartitions,
  type PartitionDimension,
} from './core/partitions/multi.js'
export {
  DynamicPartitionsDefinition,
  dynamicPartitions,
  StaticPartitionsDefinition,
  staticPartitions,
} from './core/partitions/static.js'
export { PartitionSubset } from './core/partitions/subset.js'
export {
  type CronPartitionsOptions,
  cronPartitions,
  dailyPartitions,
  hourlyPartitions,
  monthlyPartitions,
  type TimeCadence,
  TimePartitionsDefinition,
  type TimePartitionsOptions,
  type WeeklyPartitionsOptions,
  weeklyPartitions,
} from './core/partitions/time.js'
export { type Recovery, recoverRuns } from './core/recovery.js'
export type { RetentionConfig } from './core/retention.js'
export { retryDelay } from './core/retry.js'
export { parseSelection, resolveSelection, type SelectionTerm } from './core/selection.js'
export { type OpenStoreOptions, openStore } from './core/store/open.js'
export type { ExecutorStore, ReadOnlyStore, RunStore } from './core/store/run-store.js'
export type {
  AttemptRecord,
  BackfillRecord,
  BackfillSpec,
  BackfillState,
  BackfillStatus,
  BackfillSubmitOutcome,
  BackupRecord,
  CheckResultRecord,
  CommittedTick,
  CreateRunResult,
  EventFilter,
  InstigatorKind,
  InstigatorState,
  InstigatorStatus,
  InterruptedRun,
  Lease,
  MaintenanceState,
  MaterializationRecord,
  NewRun,
  NewTick,
  ParkedReplay,
  ParkedRequest,
  PartitionEvent,
  PartitionStatusSubsets,
  PoolSlot,
  PruneCount,
  PruneDeleted,
  PruneKind,
  PrunePlan,
  PrunePolicy,
  RecoveredRun,
  RecoverOptions,
  ReplayOutcome,
  RequestOutcome,
  RunFilter,
  RunGuard,
  RunHold,
  RunOwner,
  RunRecord,
  RunRequest,
  RunRequestSpec,
  RunStatus,
  StepRecord,
  StepStatus,
  StoredEvent,
  StoredPartitionStatus,
  TickRecord,
  TickStatus,
  WriteBatch,
} from './core/store/types.js'
export { type EcsRunLauncherOptions, ecsRunLauncher } from './daemon/ecs-launcher.js'
export {
  type Ec2Runner,
  type Ec2RunnerOptions,
  type Ec2RunnerStats,
  ec2Runner,
  type LaunchTemplateRef,
  type TerminateOrphanInstancesOptions,
  terminateOrphanInstances,
} from './runners/ec2.js'
export {
  type EcsRunner,
  type EcsRunnerOptions,
  type EcsRunnerStats,
  ecsRunner,
  type StopOrphanTasksOptions,
  stopOrphanTasks,
} from './runners/ecs.js'
export { type LocalProcessRunnerOptions, localProcessRunner } from './runners/local.js'
export { type IdRange, splitRange } from './runners/ranges.js'
export { type RunUnitsOptions, runUnits, type UnitOutcome, UnitsFailedError } from './runners/run-units.js'
export { type StatusChannel, type StatusOptions, statusChannel } from './runners/status.js'
export type { Runner, WorkHandle, WorkListener, WorkProgress, WorkResult, WorkUnit } from './runners/types.js'
export { type IndexFields, MEDIA_FIELDS, type SearchableField } from './search/index-shard.js'
export {
  allDepsUpdatedSinceCron,
  and,
  anyDepsInProgress,
  anyDepsMissing,
  anyDepsUpdated,
  type CronOptions,
  checksPassed,
  cronTickPassed,
  eager,
  inProgress,
  missing,
  newlyUpdated,
  not,
  onCron,
  onMissing,
  or,
  sinceLastRequested,
} from './sensors/automation/conditions.js'
export {
  AUTOMATION_ORIGIN,
  AUTOMATION_TAG,
  AutomationEvaluator,
  type AutomationOptions,
  type AutomationRequest,
  type AutomationTickResult,
} from './sensors/automation/evaluator.js'
export {
  type GuardSpec,
  onRunStatus,
  type ScheduleDefinition,
  type SensorContext,
  type SensorDefinition,
  type SensorResult,
  type SensorRunRequest,
  schedule,
  scheduleTicks,
  sensor,
  whenMaterialized,
} from './sensors/definitions.js'
