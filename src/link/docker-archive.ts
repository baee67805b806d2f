// `--format docker`: one `docker save`-style tar holding many images, each blob stored once.
//
// Layout (Docker 25+'s, which older loaders read too, since they follow manifest.json's paths):
//   manifest.json    [{Config, RepoTags, Layers}] — what docker load, podman load and skopeo read
//   repositories     {"registry/repo": {"tag": "<config hex>"}} — legacy; docker load only reads it when
//                    manifest.json is absent, so it is informational
//   blobs/sha256/<hex>  configs, layers and manifests, named by their digest
//   index.json, oci-layout  the same images as an OCI layout (as Docker 25+ writes): each reference's
//                    root (an index stays whole) with the registry's bytes, so a bundle reader
//                    gets the registry's digests back; podman 4.3 tries docker-archive first when loading
//                    (libimage: "DOCKER-ARCHIVE - must be first", containers/podman#10809), and
//                    skopeo's docker-archive: reads manifest.json only, so the extra files are inert.
//
// Layers go in as the registry sent them (gzip) by default: docker/podman load decompress them.
// With `uncompressed`, layers are written as plain tars named by their diff_id (docker save's
// bytes), the decompressed sha256 checked against the config's rootfs.diff_ids while streaming,
// and index.json points at a rewritten OCI manifest that describes those uncompressed layers
// (the registry's manifests describe the compressed blobs, which are not in the tar then).
//
// A docker archive holds one platform per reference and only container images: artifacts (Helm
// charts and other non-image configs) are skipped with a warning, so one chart in a long image
// list does not sink the archive; an archive left with no image at all is an error.
import { rm } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { hexOf } from '../cache/cache.js';
import { formatPlatform } from '../ref/platform.js';
import { formatReference } from '../ref/reference.js';
import { blobsOf, leafManifests, type Descriptor, type GraphNode, type ManifestNode, type ResolvedImage, walkNodes } from '../resolve/graph.js';
import { isImageConfigType, MT } from '../util/mediatypes.js';
import { ownFile, writeAtomically } from './files.js';
import type { LinkOptions, LinkResult } from './index.js';
import { blobName, guardOutput, imageLabel, OCI_LAYOUT, ociDescriptor, ociIndexBytes, rootDescriptor, sha256, TarSink } from './oci-layout.js';
import { MAX_CONFIG_BYTES, openLayerTar } from './rootfs.js';
import { InvalidInputError, OcisaveError } from '../util/errors.js';

/**
 * The one manifest a single-platform output (docker archive, rootfs) takes from `image`.
 * Attestation entries (platform unknown/unknown) are not images and are ignored when a real one is there.
 */
export function selectSingleManifest(image: ResolvedImage, output: string): ManifestNode {
  let leaves = leafManifests(image.root);
  const real = leaves.filter((m) => m.platform?.os !== 'unknown');
  if (real.length) leaves = real;
  if (leaves.length === 1) return leaves[0]!;
  if (leaves.length === 0) {
    throw new OcisaveError('NOT_FOUND', `${imageLabel(image)}: the index ${image.root.digest} has no manifest for the selected platform(s); pass --platform os/arch with one it lists`);
  }
  const platforms = leaves.map((m) => (m.platform ? formatPlatform(m.platform) : m.digest));
  throw new InvalidInputError(
    `${imageLabel(image)} is a multi-platform image and ${leaves.length} platforms were selected (${platforms.join(', ')}); ` +
      `a ${output} holds one platform per reference: pass --platform os/arch, e.g. --platform ${platforms[0]}`,
  );
}

interface ArchiveImage {
  manifest: ManifestNode;
  labels: string[];
  repoTags: string[];
  /** Full reference name → the root resolve found for it (the manifest, or an index above it). */
  roots: Map<string, GraphNode>;
  diffIds: string[];
}

interface ManifestItem {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

export async function linkDockerArchive(opts: LinkOptions): Promise<LinkResult> {
  const { graph, cache } = opts;
  const warnings: string[] = [];
  const warn = (msg: string) => {
    warnings.push(msg);
    opts.onWarning?.(msg);
  };

  // Check everything first: nothing is written for an archive that cannot be completed.
  const byManifest = new Map<string, ArchiveImage>();
  for (const image of graph.images) {
    const label = imageLabel(image);
    const m = selectSingleManifest(image, 'docker archive');
    if (!isImageConfigType(m.config.mediaType)) {
      warn(`${label} is not a container image (config media type ${m.config.mediaType}); a docker archive cannot hold it, skipped (save it with --format oci or registry)`);
      continue;
    }
    for (const node of walkNodes(image.root)) {
      if (sha256(node.bytes) !== node.digest) throw new OcisaveError('DIGEST_MISMATCH', `${label}: manifest bytes do not hash to ${node.digest}; refusing to write an archive that would not verify`);
    }
    for (const d of blobsOf(m)) {
      if (!cache.hasBlob(d.digest)) throw new OcisaveError('NOT_FOUND', `${label}: blob ${d.digest} is not in the cache at ${cache.dir}; fetch the image first (linking never downloads)`);
    }
    let item = byManifest.get(m.digest);
    if (!item) {
      const config = JSON.parse((await cache.readBlob(m.config.digest, MAX_CONFIG_BYTES)).toString('utf8')) as { rootfs?: { diff_ids?: string[] } };
      const diffIds = config.rootfs?.diff_ids ?? [];
      if (diffIds.length !== m.layers.length) {
        throw new InvalidInputError(`${label}: manifest ${m.digest} has ${m.layers.length} layers but its config lists ${diffIds.length} rootfs.diff_ids; docker load would reject it`);
      }
      item = { manifest: m, labels: [], repoTags: [], roots: new Map(), diffIds };
      byManifest.set(m.digest, item);
    }
    item.labels.push(label);
    const name = formatReference(image.ref);
    if (!item.roots.has(name)) item.roots.set(name, image.root);
    // Fully qualified, as skopeo writes them: podman 4.3 load takes a short `alpine:3.19` as
    // localhost/alpine:3.19 (checked), while docker load normalises either form the same way.
    // An image pinned only by digest has no tag to give.
    if (image.ref.tag) {
      const tag = `${image.ref.registry}/${image.ref.repository}:${image.ref.tag}`;
      if (!item.repoTags.includes(tag)) item.repoTags.push(tag);
    }
  }
  const items = [...byManifest.values()];
  if (items.length === 0) throw new InvalidInputError('nothing to write: no container image among the references (a docker archive holds images only)');
  await guardOutput(opts.out, 'file');

  return writeAtomically(opts.out, async (staging) => {
    const sink = await TarSink.create(staging);
    try {
      const written = new Set<string>();
      const manifestJson: ManifestItem[] = [];
      const roots: Descriptor[] = [];
      const repositories: Record<string, Record<string, string>> = {};

      const addBlob = async (d: Descriptor) => {
        if (written.has(d.digest)) return;
        written.add(d.digest);
        await opts.onBlob?.({ digest: d.digest, size: d.size });
        await sink.addFile(blobName(d.digest), cache.blobSource(d.digest), d.size);
      };
      const addBytes = async (digest: string, bytes: Buffer) => {
        if (written.has(digest)) return;
        written.add(digest);
        await opts.onBlob?.({ digest, size: bytes.length });
        await sink.addBytes(blobName(digest), bytes);
      };

      const uncompressedSizes = new Map<string, number>();
      // Decompress into the cache's temp area while hashing (the tar header needs the size before
      // the bytes), check the diff_id, then stream the checked file into the archive.
      const addUncompressed = async (layer: Descriptor, diffId: string, what: string): Promise<number> => {
        written.add(diffId);
        await opts.onBlob?.({ digest: diffId, size: layer.size });
        const src = await openLayerTar(cache.blobSource(layer.digest), what);
        const temp = cache.tempPath('uncompressed');
        try {
          await pipeline(src.stream, createWriteStream(temp, { flags: 'wx' }));
          if (src.digest() !== diffId) {
            throw new InvalidInputError(`${what} decompresses to ${src.digest()}, but the image config's rootfs.diff_ids says ${diffId}: the image is inconsistent; save it without --uncompressed (docker load would reject it too)`);
          }
          await sink.addFile(blobName(diffId), ownFile(temp), src.size());
          uncompressedSizes.set(diffId, src.size());
          return src.size();
        } finally {
          await rm(temp, { force: true });
        }
      };

      for (const item of items) {
        const m = item.manifest;
        await addBlob(m.config);
        const layerFiles: string[] = [];
        if (!opts.uncompressed) {
          for (const layer of m.layers) {
            await addBlob(layer);
            layerFiles.push(blobName(layer.digest));
          }
          for (const [name, root] of item.roots) {
            for (const node of walkNodes(root)) await addBytes(node.digest, node.bytes);
            roots.push(rootDescriptor(root, name));
          }
        } else {
          const layers: Descriptor[] = [];
          for (const [i, layer] of m.layers.entries()) {
            const diffId = item.diffIds[i]!;
            hexOf(diffId); // a diff_id we cannot name a file by is an error, not a silent skip
            const size = written.has(diffId)
              ? uncompressedSizes.get(diffId)!
              : await addUncompressed(layer, diffId, `${item.labels[0]}: layer ${i} (${layer.digest})`);
            layers.push({ mediaType: MT.ociLayer, digest: diffId, size });
            layerFiles.push(blobName(diffId));
          }
          const bytes = rewriteManifest(m, layers);
          const node = { ...m, mediaType: MT.ociManifest, digest: sha256(bytes), bytes };
          await addBytes(node.digest, bytes);
          for (const name of item.roots.keys()) roots.push(rootDescriptor(node, name, m.platform ? { platform: m.platform } : {}));
        }

        manifestJson.push({ Config: blobName(m.config.digest), RepoTags: item.repoTags, Layers: layerFiles });
        for (const tag of item.repoTags) {
          const colon = tag.lastIndexOf(':');
          (repositories[tag.slice(0, colon)] ??= {})[tag.slice(colon + 1)] = hexOf(m.config.digest);
        }
      }

      await sink.addBytes('manifest.json', Buffer.from(`${JSON.stringify(manifestJson)}\n`));
      if (Object.keys(repositories).length) await sink.addBytes('repositories', Buffer.from(`${JSON.stringify(repositories)}\n`));
      await sink.addBytes('index.json', ociIndexBytes(roots));
      await sink.addBytes('oci-layout', OCI_LAYOUT);
      await sink.finish();

      return { path: opts.out, linked: 0, copied: 0, written: sink.counts.written, warnings };
    } catch (err) {
      await sink.abort(err as Error);
      throw err;
    }
  });
}

/** The OCI manifest describing the uncompressed layers actually in the archive (same config blob). */
function rewriteManifest(m: ManifestNode, layers: Descriptor[]): Buffer {
  const original = JSON.parse(m.bytes.toString('utf8')) as Record<string, unknown> & { config: Descriptor };
  const out: Record<string, unknown> = { schemaVersion: 2, mediaType: MT.ociManifest, config: ociDescriptor(original.config), layers };
  if (original.annotations) out.annotations = original.annotations;
  return Buffer.from(JSON.stringify(out));
}
