/**
 * The PostgreSQL server of the tests: the one the benchmarks start too (bench/postgres-server.ts,
 * kept there so that it is compiled into dist/ for them), so tests and benchmarks never diverge.
 */
export { startPostgres, type TestPostgres } from '../bench/postgres-server.js'
