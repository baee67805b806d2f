// Open a saved bundle of any format: a registry v2 layout or an OCI layout directory, an OCI
// archive, or a docker-save tar. push, serve and verify all read bundles through this.
import { stat } from 'node:fs/promises';
import { openDockerArchive } from './docker.js';
import { OciBundle } from './oci.js';
import { findRegistryRoot, RegistryBundle } from './registry.js';
import { lstatInside } from '../fs/contained.js';
import { DirStore, TarStore } from './store.js';
import { BundleError, type Bundle, type BundleProblem } from './types.js';

export * from './types.js';

/** A bundle with the problems its reader noticed while indexing it (bad links, unreadable manifests). */
export type OpenedBundle = Bundle & { readonly problems: BundleProblem[] };

export async function openBundle(path: string): Promise<OpenedBundle> {
  let st;
  try {
    st = await stat(path);
  } catch {
    throw new BundleError(`${path}: no such file or directory`);
  }
  if (st.isDirectory()) {
    if (findRegistryRoot(path)) return RegistryBundle.open(path);
    const dir = new DirStore(path);
    if ((await dir.size('index.json')) !== undefined) return OciBundle.open(path, dir);
    const index = await lstatInside(path, 'index.json');
    if (index) throw new BundleError(`${path}/index.json is a symbolic link or special file; links inside a bundle are never followed`);
    throw new BundleError(`${path} is neither a registry layout (docker/registry/v2) nor an OCI layout (index.json)`);
  }
  const tar = await TarStore.open(path);
  if ((await tar.size('manifest.json')) !== undefined) return openDockerArchive(path, tar);
  if ((await tar.size('index.json')) !== undefined) return OciBundle.open(path, tar);
  throw new BundleError(`${path} is a tar but neither a docker archive (manifest.json) nor an OCI archive (index.json)`);
}
