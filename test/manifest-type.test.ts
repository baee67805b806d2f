// The one manifestMediaType (src/ref/manifest.ts) that the registry client and the bundle readers share.
import { describe, expect, it } from 'vitest';
import { manifestMediaType, ManifestFormatError } from '../src/ref/manifest.js';

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

describe('manifestMediaType', () => {
  it("takes the bytes' own mediaType over any hint", () => {
    expect(manifestMediaType(json({ schemaVersion: 2, mediaType: DOCKER_LIST, manifests: [] }), OCI_MANIFEST)).toBe(DOCKER_LIST);
  });

  it('takes a specific hint (descriptor or Content-Type, parameters dropped) when the bytes name none', () => {
    expect(manifestMediaType(json({ schemaVersion: 2, layers: [] }), `${OCI_MANIFEST}; charset=utf-8`)).toBe(OCI_MANIFEST);
  });

  it('ignores generic JSON hints and tells an index from a manifest by shape', () => {
    expect(manifestMediaType(json({ schemaVersion: 2, manifests: [] }), 'text/plain')).toBe(OCI_INDEX);
    expect(manifestMediaType(json({ schemaVersion: 2, config: {}, layers: [] }), 'application/json')).toBe(OCI_MANIFEST);
    expect(manifestMediaType(json({ schemaVersion: 2, manifests: {} }))).toBe(OCI_MANIFEST);
  });

  it('refuses bytes that are no JSON object, and docker schema 1 by body or by type', () => {
    for (const bytes of [Buffer.from('not json'), json(null), json(7)]) {
      expect(() => manifestMediaType(bytes, undefined, 'm')).toThrow(expect.objectContaining({ reason: 'not-json', message: 'm is not a JSON manifest' }));
    }
    expect(() => manifestMediaType(json({ schemaVersion: 1, fsLayers: [] }))).toThrow(ManifestFormatError);
    const signed = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
    expect(() => manifestMediaType(json({ schemaVersion: 2 }), signed, 'r')).toThrow(expect.objectContaining({ reason: 'schema1', message: expect.stringMatching(/^r: docker schema 1 manifests are not supported/) }));
  });
});
