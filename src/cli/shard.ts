// `--shard K/N` on save, mirror and resolve: keep the inputs whose repository falls in shard K.
// The library applies it to the inputs after they are collected (arguments, -f files, locks, tag
// sets), before anything resolves, so each process lists and fetches only its own repositories.
import { Command, InvalidArgumentError } from 'commander';
import { parseShard } from '../ref/shard.js';

export function addShardOption(cmd: Command): Command {
  return cmd.option('--shard <K/N>', 'take only part K of N of the inputs, split by repository (stable hash; see README "Scaling out")', (v: string) => {
    try {
      return parseShard(v);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  });
}
