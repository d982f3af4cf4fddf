/**
 * Cron ticks live in `core/cron.ts` (time partitions need them too, and core imports nothing
 * above it); schedules and sensors keep importing them from here.
 */
export { type CronSpec, checkTimezone, lastTicks, nextTicks, parseCron, ticksBetween } from '../core/cron.js'
