// convert(): a saved bundle of any format to another format, offline.
import type { ConvertOptions, ConvertResult as ConvertReport } from '../bundle/convert.js';
import { parsePlatformSelector, type PlatformSelector } from '../ref/platform.js';
import { SCHEMAS, versioned } from './schema.js';

export interface ConvertRequest extends Omit<ConvertOptions, 'platforms'> {
  /** 'all', 'os/arch[/variant],…', or parsed platforms; default: all the bundle holds. */
  platforms?: PlatformSelector | string;
}

export type ConvertResult = { schema: typeof SCHEMAS.convert } & ConvertReport;

export async function convert(r: ConvertRequest): Promise<ConvertResult> {
  const { convert: convertBundle } = await import('../bundle/convert.js');
  const platforms = typeof r.platforms === 'string' ? parsePlatformSelector(r.platforms) : r.platforms;
  return versioned(SCHEMAS.convert, await convertBundle({ ...r, platforms }));
}
