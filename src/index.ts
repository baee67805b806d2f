// ocisave as a library: the whole public API, in one place. The CLI (src/cli) is a thin layer
// over these calls; results and events are the JSON the CLI prints with --json, each carrying
// its schema name (src/api/schemas/*.json, also exported as 'ocisave/schemas/<name>.json').

export { save, DEFAULT_FORMAT, type SaveRequest, type SaveResult } from './api/save.js';
export { resolve, type ResolveRequest, type ResolveResult, type ResolveReport, type ResolvedRow } from './api/resolve.js';
export { push, type PushRequest, type PushResult } from './api/push.js';
export { mirror, planMirror, type MirrorRequest, type MirrorResult, type MirrorPlanResult } from './api/mirror.js';
export { verify, type VerifyRequest, type VerifyResult } from './api/verify.js';
export { convert, type ConvertRequest, type ConvertResult } from './api/convert.js';
export { serve, type ServeRequest, type ServeResult, type ServeInfo, type RunningBundleServer } from './api/serve.js';
export { unpack, type UnpackRequest, type UnpackResult } from './api/unpack.js';
export { cacheLs, cacheDu, cacheVerify, cachePrune, type CacheRequest, type CacheLsResult, type CacheDuResult, type CacheVerifyResult, type CachePruneResult } from './api/cache.js';
export { listImages, type ListImagesRequest, type ListImagesVersioned, type ListedImage, type ListImagesResult } from './api/list-images.js';
export { collectInputs, gatherInputs, type InputOptions, type CollectedInputs, type GatheredInputs } from './api/inputs.js';
export { defaultCacheDir, DEFAULT_JOBS, type RegistryOptions, type FetchRequest } from './api/options.js';
export { DEFAULT_PLATFORMS, hostPlatforms, savePlatforms } from './api/platforms.js';
export { SCHEMAS, type SchemaName } from './api/schema.js';
export type { OcisaveEvent, EventHandler } from './api/events.js';

export type { EngineEvent } from './util/events.js';
export type { PushEvent, PushSummary } from './push/push.js';
export type { Summary } from './engine/pipeline.js';
export type { Failure } from './resolve/graph.js';
export type { ImageRow } from './resolve/describe.js';
export type { OutputFormat } from './link/index.js';
export type { Platform, PlatformSelector } from './ref/platform.js';
export type { Shard } from './ref/shard.js';
export type { HasherKind } from './hash/hasher.js';
export type { MirrorSummary } from './mirror/mirror.js';
export type { MirrorPlan } from './mirror/plan.js';
export type { VerifyReport } from './bundle/verify.js';
export type { CacheListing, CacheUsage, CacheVerifyReport, PruneReport } from './cache/maintenance.js';
export { describeFailure, SaveError, InterruptedError } from './engine/errors.js';

// Error classes, for instanceof checks; every one carries a `code` (README, Errors).
export { OcisaveError, UsageError, InvalidInputError, codeOf, type ErrorCode } from './util/errors.js';
export { RegistryError } from './registry/errors.js';
export { ReferenceError as InvalidReferenceError } from './ref/reference.js';
export { InvalidDigestError, InvalidSizeError } from './ref/digest.js';
export { CacheIntegrityError } from './cache/cache.js';
export { BundleError } from './bundle/types.js';
export { UnsafePathError } from './fs/contained.js';
export { LayerError } from './link/rootfs.js';
export { CertDirError } from './registry/net-errors.js';
export { LowSpeedError } from './registry/timeouts.js';
export { CorruptBlobError } from './push/upload-hash.js';
export { ChartLimitError } from './inputs/helm.js';
