// `--shard K/N` on save, mirror and resolve: keep the inputs whose repository falls in shard K.
// Applied to the inputs after they are collected (arguments, -f files, locks, tag sets), before
// anything resolves, so each process lists and fetches only its own repositories.
import { Command, InvalidArgumentError } from 'commander';
import { parseReference } from '../ref/reference.js';
import { inShard, parseShard, type Shard } from '../ref/shard.js';
import type { TagSetRequest } from '../resolve/tags.js';

export function addShardOption(cmd: Command): Command {
  return cmd.option('--shard <K/N>', 'take only part K of N of the inputs, split by repository (stable hash; see README "Scaling out")', (v: string) => {
    try {
      return parseShard(v);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  });
}

/** The references and tag sets of shard `shard` (all of them without one). A reference that does not parse goes to shard 1, which reports it. */
export function shardInputs(shard: Shard | undefined, refs: string[], tagSets: TagSetRequest[]): { refs: string[]; tagSets: TagSetRequest[] } {
  if (!shard) return { refs, tagSets };
  const mine = (input: string) => {
    try {
      const ref = parseReference(input);
      return inShard(shard, ref.registry, ref.repository);
    } catch {
      return shard.index === 1;
    }
  };
  return { refs: refs.filter(mine), tagSets: tagSets.filter((t) => mine(t.repository)) };
}
