// What the target registry already holds, asked with HEAD: where a tag points, whether a manifest
// or blob is there. Mirror uses it to report moved tags, and --dry-run to print the plan.
import { MANIFEST_ACCEPT } from '../util/mediatypes.js';
import { httpError, type PushSession } from '../push/upload.js';

/** The digest `ref` (a tag or digest) names in `repo`, or undefined when the target lacks it. */
export async function targetManifest(session: PushSession, repo: string, ref: string): Promise<string | undefined> {
  const res = await session.api(repo, 'HEAD', `/v2/${repo}/manifests/${ref}`, { accept: MANIFEST_ACCEPT });
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw httpError(session.registry, repo, `HEAD manifest ${ref}`, res);
  const digest = res.headers['docker-content-digest'];
  // A registry that omits the header still has the manifest; a tag check then counts it as moved.
  return typeof digest === 'string' && /^sha256:[0-9a-f]{64}$/.test(digest) ? digest : ref.startsWith('sha256:') ? ref : 'unknown';
}

export type TagState = 'new' | 'moved' | 'unchanged';

export function tagState(current: string | undefined, wanted: string): TagState {
  return current === undefined ? 'new' : current === wanted ? 'unchanged' : 'moved';
}
