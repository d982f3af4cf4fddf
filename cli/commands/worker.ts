import type { Command } from 'commander'
import type { CliContext } from '../io.js'

interface WorkerCommandOptions {
  statusFile?: string
}

/**
 * `refresh worker <task> <input-json>`: the indexer worker's entry point, the same code for local
 * processes, ECS tasks (the image's ENTRYPOINT) and EC2 instances. Its messages go over IPC or
 * stdout (see runners/worker.ts), so this command prints nothing of its own.
 */
export function registerWorker(program: Command, ctx: CliContext): void {
  program
    .command('worker')
    .description('run one worker task (what reindex starts per id range: locally, as an ECS task or on EC2)')
    .argument('<task>', 'the task to run, for example index-shard')
    .argument('<input-json>', "the task's input as one JSON object")
    .option(
      '--status-file <path-or-s3-url>',
      'keep a JSON status (progress, then the output or the error) in this file or S3 object (s3://bucket/key)',
    )
    .addHelpText(
      'after',
      `\nExit code 0 only when the task reported a result (and, with --status-file, its final status was written); 1 when it failed; 2 on bad input. The index-shard task's source and output may be s3:// URLs.\n\nExample:\n  refresh worker index-shard '{"source":"clean.db","table":"media_clean","lo":1,"hi":1001,"output":"shard-000.db","shard":0}'`,
    )
    .action(async (task: string, input: string, options: WorkerCommandOptions) => {
      const { workerMain } = await import('../../runners/worker.js')
      ctx.code = await workerMain([task, input], { statusFile: options.statusFile })
      // the local pool talks over IPC: let the parent see the end of the channel before the exit
      // (a parent that died has closed it already: disconnecting again would be an error)
      if (process.connected) process.disconnect()
    })
}
