// Which platforms a call keeps when none is given: every one, except where an output holds one.
import { hostPlatform, type PlatformSelector } from '../ref/platform.js';
import type { OutputFormat } from '../link/index.js';
import { platformsOf } from './options.js';

export const DEFAULT_PLATFORMS: PlatformSelector = 'all';

/** The host's platform, as docker pull picks one. */
export function hostPlatforms(): PlatformSelector {
  return [hostPlatform()];
}

/**
 * save's platforms: those given; else the lock's (a multi-platform lock cannot make a docker
 * archive); else the host's for docker archives (one platform per image, as docker save), else all.
 */
export function savePlatforms(given: PlatformSelector | string | undefined, format: OutputFormat, lockPlatform: PlatformSelector | undefined): PlatformSelector {
  const docker = format === 'docker';
  const lockDefault = lockPlatform && !(docker && lockPlatform === 'all') ? lockPlatform : undefined;
  return platformsOf(given, lockDefault ?? (docker ? hostPlatforms() : DEFAULT_PLATFORMS));
}
