// unpack(): fetch one image (through the shared cache) and unpack its root filesystem into a
// directory, as `umoci unpack --rootless` lays it out (rootfs only, no bundle).
import { SaveError } from '../engine/errors.js';
import { fetchImages } from '../engine/pipeline.js';
import { formatReference } from '../ref/reference.js';
import { registriesOf } from './inputs.js';
import { credentialsOf, fetchOptionsOf, platformsOf, type FetchRequest } from './options.js';
import { hostPlatforms } from './platforms.js';
import { SCHEMAS, versioned } from './schema.js';
import { OcisaveError } from '../util/errors.js';

export interface UnpackRequest extends FetchRequest {
  reference: string;
  /** The directory to create (must be absent or empty unless `replace`). */
  out: string;
  /** Replace `out` when it is not empty, once the new tree is complete. */
  replace?: boolean;
}

export interface UnpackResult {
  schema: typeof SCHEMAS.unpack;
  reference: string;
  manifest: string;
  layers: number;
  path: string;
  warnings: number;
  seconds: number;
}

export async function unpack(r: UnpackRequest): Promise<UnpackResult> {
  // One root filesystem: the host's platform unless told otherwise, as docker pull does.
  const opts = fetchOptionsOf(r, platformsOf(r.platforms, hostPlatforms()), credentialsOf(r, registriesOf([r.reference])));
  const events = opts.events!;
  const fetched = await fetchImages([r.reference], opts);
  try {
    const image = fetched.graph.images[0];
    // No image without a failure that says why (keepGoing); each failure carries its code.
    if (!image) throw fetched.graph.failures.length ? new SaveError(fetched.graph.failures) : new OcisaveError('NOT_FOUND', `${r.reference}: nothing to unpack`);
    const started = Date.now();
    const { unpackImage } = await import('../link/rootfs.js');
    const result = await unpackImage({
      image,
      cache: fetched.cache,
      out: r.out,
      replace: r.replace,
      onWarning: (message) => events.emit({ type: 'warning', message }),
    });
    const seconds = (Date.now() - started) / 1000;
    return versioned(SCHEMAS.unpack, { reference: formatReference(image.ref), manifest: result.manifest, layers: result.layers, path: result.path, warnings: result.warnings.length, seconds });
  } finally {
    await fetched.close();
  }
}
