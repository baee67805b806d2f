// Durations as `cache prune --older-than` takes them (30d, 12h, 1h30m): apart from the cache
// maintenance so that the CLI checks the flag without loading the cache (and lmdb).
import { InvalidInputError } from '../util/errors.js';

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** "30d", "12h", "1h30m", "90s", "2w" → milliseconds. */
export function parseDuration(text: string): number {
  const s = text.trim().toLowerCase();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * UNITS_MS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (!s || matched !== s.length) throw new InvalidInputError(`"${text}" is not a duration: use e.g. 30d, 12h, 1h30m, 45m, 90s, 2w`);
  return total;
}
