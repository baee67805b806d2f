// Root filesystem unpacking: the same tree as `umoci unpack --rootless` for a layered image with
// whiteouts, opaque directories, hard links, symlinks, modes, FIFOs, devices and type changes;
// and layers that try to escape the root are refused without touching the host.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar, { type Header } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkOutput } from '../src/link/index.js';
import { strictlyInside, unpackImage, whiteoutTarget } from '../src/link/rootfs.js';
import { formatReference } from '../src/ref/reference.js';
import type { ResolvedImage } from '../src/resolve/graph.js';
import type { BuiltLayer } from './fixtures/index.js';
import { runOk } from './support/exec.js';
import { describeTree, GraphBuilder, rmrf, sha, tempDir } from './link-graph.js';

type Entry = Partial<Header> & { name: string; body?: string | Buffer };

const T1 = new Date('2023-05-01T10:00:00Z');
const T2 = new Date('2023-06-01T10:00:00Z');
const T3 = new Date('2023-07-01T10:00:00Z');

/** A layer from raw tar headers (any type, any name: escapes included), gzip unless `plain`. */
async function rawLayer(entries: Entry[], mtime: Date): Promise<BuiltLayer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const { body, ...h } of entries) {
    const header: Partial<Header> & { name: string } = { mtime, uid: 0, gid: 0, ...h };
    if (!header.type) header.type = 'file';
    if (header.mode === undefined) header.mode = header.type === 'directory' ? 0o755 : header.type === 'symlink' ? 0o777 : 0o644;
    const data = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
    await new Promise<void>((resolve, reject) => pack.entry(header, data, (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  const t = Buffer.concat(chunks);
  const gz = gzipSync(t);
  return { tar: t, gz, diffId: sha(t), digest: sha(gz), size: gz.length };
}

const dir = (name: string, mode = 0o755, mtime?: Date): Entry => ({ name, type: 'directory', mode, ...(mtime ? { mtime } : {}) });
const file = (name: string, body: string, mode = 0o644): Entry => ({ name, type: 'file', body, mode });

describe('rootfs unpacking', () => {
  let work: string;
  let builder: GraphBuilder;
  let outside: string;
  let image: ResolvedImage;
  let layers: BuiltLayer[];

  beforeAll(async () => {
    work = await tempDir('rootfs');
    builder = await GraphBuilder.create(join(work, 'cache'));
    // A host directory that layers aim symlinks at: it must never be written to.
    await writeFile(join(work, 'canary'), 'canary\n');
    outside = await tempDir('rootfs-host');
    await writeFile(join(outside, 'victim'), 'host content\n');

    layers = [
      await rawLayer(
        [
          dir('./', 0o755),
          dir('bin'),
          file('bin/sh', 'shell v1\n', 0o755),
          { name: 'bin/sh-hard', type: 'link', linkname: 'bin/sh' },
          dir('etc'),
          file('etc/passwd', 'root:x:0:0::/root:/bin/sh\n'),
          file('etc/shadow', 'root:*::\n', 0o600),
          file('etc/motd', 'hello\n'),
          { name: 'etc/alternatives', type: 'symlink', linkname: '/usr/bin/su' },
          dir('usr'),
          dir('usr/bin'),
          file('usr/bin/su', 'su\n', 0o4755),
          dir('usr/lib'),
          file('usr/lib/libfoo.so.1', 'ELF foo\n', 0o755),
          { name: 'usr/lib/libfoo.so', type: 'symlink', linkname: 'libfoo.so.1' },
          { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
          dir('opt'),
          file('opt/keep.txt', 'lower keep\n'),
          dir('opt/old', 0o750),
          file('opt/old/a.txt', 'lower a\n'),
          dir('opt/old/sub'),
          file('opt/old/sub/b.txt', 'lower b\n'),
          dir('var'),
          dir('var/cache'),
          file('var/cache/x', 'cached\n'),
          dir('data'),
          file('data/file-becomes-dir', 'i was a file\n'),
          dir('data/dir-becomes-file'),
          file('data/dir-becomes-file/inner', 'inner\n'),
          { name: 'data/link-becomes-file', type: 'symlink', linkname: join(outside, 'victim') },
          { name: 'data/link-becomes-dir', type: 'symlink', linkname: outside },
          dir('tmp', 0o1777),
          dir('run'),
          { name: 'run/ctl', type: 'fifo', mode: 0o600 },
          dir('dev'),
          { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
          dir('empty', 0o700),
          file('readonly', 'ro\n', 0o444),
          file('noperm', 'none\n', 0o000),
        ],
        T1,
      ),
      await rawLayer(
        [
          dir('etc'),
          { name: 'etc/.wh.motd', type: 'file' },
          file('etc/passwd', 'root:x:0:0::/root:/bin/bash\n', 0o600),
          dir('opt'),
          // Same-layer entries survive the opaque marker, whether they come before or after it.
          file('opt/new.txt', 'upper new\n'),
          { name: 'opt/.wh..wh..opq', type: 'file' },
          dir('opt/old', 0o755),
          file('opt/old/c.txt', 'upper c\n'),
          dir('var'),
          { name: 'var/.wh.cache', type: 'file' },
          dir('data'),
          dir('data/file-becomes-dir', 0o711),
          file('data/file-becomes-dir/x', 'now a dir\n'),
          file('data/dir-becomes-file', 'now a file\n', 0o640),
          // Written through the in-root symlink lib -> usr/lib.
          file('lib/extra.so', 'extra\n'),
          // Replaces the symlink itself; the host file it pointed at is untouched.
          file('data/link-becomes-file', 'image content\n'),
          // A directory entry over a symlink (to the host) replaces the symlink.
          dir('data/link-becomes-dir', 0o700),
          file('data/link-becomes-dir/inside', 'inside\n'),
          // The lower hard link keeps the old inode and content.
          dir('bin'),
          file('bin/sh', 'shell v2\n', 0o755),
          { name: 'usr/lib/libfoo-hard', type: 'link', linkname: 'usr/lib/libfoo.so.1' },
          // Whiteout of something the same layer created: not applied (it hides lower layers only).
          file('etc/issue', 'kept\n'),
          { name: 'etc/.wh.issue', type: 'file' },
        ],
        T2,
      ),
      await rawLayer(
        [
          dir('bin'),
          { name: 'bin/.wh.sh-hard', type: 'file' },
          // Symlinks that point out of the root are resolved inside it when used as parents.
          { name: 'escape-abs', type: 'symlink', linkname: outside },
          file('escape-abs/pwned', 'must land in the rootfs\n'),
          { name: 'escape-rel', type: 'symlink', linkname: `../../../../../../../..${outside}` },
          file('escape-rel/pwned-rel', 'must land in the rootfs too\n'),
          // Absolute names are taken relative to the root.
          file('/abs-name', 'absolute\n'),
          file('./dot/../dotted', 'normalised\n'),
          dir('empty', 0o755),
          { name: 'hard-to-symlink', type: 'link', linkname: 'usr/lib/libfoo.so' },
        ],
        T3,
      ),
    ];
    const m = await builder.image({ format: 'oci', layers });
    image = builder.add('127.0.0.1:5000/test/rootfs:1', m);
  });
  afterAll(async () => {
    await builder.close();
    await rmrf(work, outside);
  });

  it('gives the same tree as umoci unpack --rootless, file by file', async () => {
    const layout = join(work, 'layout');
    await linkOutput('oci', { graph: builder.graph(), cache: builder.cache, out: layout });
    const bundle = join(work, 'umoci-bundle');
    const unpackStart = Math.floor(Date.now() / 1000);
    let t0 = Date.now();
    await runOk('umoci', ['unpack', '--rootless', '--image', `${layout}:${formatReference(image.ref)}`, bundle]);
    const umociMs = Date.now() - t0;

    const ours = join(work, 'ours');
    const warnings: string[] = [];
    t0 = Date.now();
    const result = await unpackImage({ image, cache: builder.cache, out: ours, onWarning: (w) => warnings.push(w) });
    console.log(`rootfs: umoci ${umociMs} ms, ours ${Date.now() - t0} ms`);
    expect(result.layers).toBe(3);

    const want = await describeTree(join(bundle, 'rootfs'), { mtimes: true, setSince: unpackStart });
    const got = await describeTree(ours, { mtimes: true, setSince: unpackStart });
    expect(got).toEqual(want);
    // The root directory itself carries the `./` entry's mode, as umoci's does.
    expect((await describeTree(dirname(ours)))[basename(ours)]?.mode).toBe(0o755);

    // Spot checks of the semantics (the comparison above already covers them).
    expect(got['etc/motd']).toBeUndefined();
    expect(got['etc/issue']?.type).toBe('file');
    expect(Object.keys(got).filter((p) => p.startsWith('opt/')).sort()).toEqual(['opt/new.txt', 'opt/old', 'opt/old/c.txt']);
    expect(got['var/cache']).toBeUndefined();
    expect(got['data/file-becomes-dir']?.type).toBe('dir');
    expect(got['data/dir-becomes-file']).toMatchObject({ type: 'file', mode: 0o640 });
    expect(got['data/link-becomes-dir']).toMatchObject({ type: 'dir', mode: 0o700 });
    expect(got['data/link-becomes-file']).toMatchObject({ type: 'file' });
    expect(got['usr/lib/extra.so']?.type).toBe('file');
    expect(got['usr/lib/libfoo-hard']?.links).toEqual(['usr/lib/libfoo-hard', 'usr/lib/libfoo.so.1']);
    expect(got['bin/sh-hard']).toBeUndefined();
    expect(got['usr/bin/su']?.mode).toBe(0o4755);
    expect(got['run/ctl']?.type).toBe('fifo');
    expect(got['dev/null']).toMatchObject({ type: 'file', size: 0, mode: 0o666 });
    expect(got[`${outside.slice(1)}/pwned`]?.type).toBe('file');
    expect(got[`${outside.slice(1)}/pwned-rel`]?.type).toBe('file');
    expect(got['hard-to-symlink']).toMatchObject({ type: 'symlink', target: 'libfoo.so.1' });
    expect(warnings.some((w) => w.includes('dev/null') && w.includes('empty file'))).toBe(true);
    // Nothing reached the host.
    expect((await readdir(outside)).sort()).toEqual(['victim']);
    expect(await readFile(join(outside, 'victim'), 'utf8')).toBe('host content\n');
  });

  it('detects compression by magic bytes, not media type', async () => {
    const l = await rawLayer([file('hello', 'plain tar\n')], T1);
    // An uncompressed layer whose descriptor claims gzip.
    const m = await builder.image({ format: 'oci', layers: [l], uncompressedLayers: true });
    m.layers[0]!.mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip';
    const out = join(work, 'plain');
    await unpackImage({ image: { input: 'x/plain:1', ref: { registry: 'docker.io', repository: 'x/plain', tag: '1' }, root: m }, cache: builder.cache, out });
    expect(await readFile(join(out, 'hello'), 'utf8')).toBe('plain tar\n');
  });

  it('checks each layer against the config diff_ids', async () => {
    const a = await rawLayer([file('a', 'a\n')], T1);
    const b = await rawLayer([file('b', 'b\n')], T1);
    const m = await builder.image({ format: 'oci', layers: [a], diffIds: [b.diffId] });
    const out = join(work, 'liar');
    await expect(
      unpackImage({ image: { input: 'x/liar:1', ref: { registry: 'docker.io', repository: 'x/liar', tag: '1' }, root: m }, cache: builder.cache, out }),
    ).rejects.toThrow(`layer ${a.digest} decompresses to ${a.diffId}, but the image config's rootfs.diff_ids says ${b.diffId}`);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a non-empty target directory unless replacing, and replaces only when complete', async () => {
    const out = join(work, 'existing');
    await mkdir(out);
    await writeFile(join(out, 'mine'), 'x');
    await expect(unpackImage({ image, cache: builder.cache, out })).rejects.toThrow(/not empty/);
    await unpackImage({ image, cache: builder.cache, out, replace: true });
    expect(existsSync(join(out, 'mine'))).toBe(false);
    expect(existsSync(join(out, 'etc', 'passwd'))).toBe(true);
  });

  it('refuses artifacts and multi-platform images without a single platform', async () => {
    const chart = await builder.artifact('mysql');
    await expect(
      unpackImage({ image: { input: 'c/mysql:1', ref: { registry: 'docker.io', repository: 'c/mysql', tag: '1' }, root: chart }, cache: builder.cache, out: join(work, 'chart') }),
    ).rejects.toThrow(/not a container image/);
    const m = image.root as import('../src/resolve/graph.js').ManifestNode;
    const arm = { ...m, digest: sha('arm'), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } };
    const amd = { ...m, platform: { os: 'linux', architecture: 'amd64' } };
    await expect(
      unpackImage({ image: { ...image, root: builder.index([amd, arm]) }, cache: builder.cache, out: join(work, 'multi') }),
    ).rejects.toThrow(/2 platforms were selected \(linux\/amd64, linux\/arm64\/v8\).*pass --platform os\/arch/);
  });

  describe('escapes are refused, naming the layer and entry, and touch nothing outside', () => {
    const cases: Array<[string, Entry[][], RegExp]> = [
      ['.. above the root', [[file('../evil', 'x')]], /entry "\.\.\/evil": path escapes the root/],
      ['.. hidden in the middle', [[dir('a'), file('a/../../evil', 'x')]], /entry "a\/\.\.\/\.\.\/evil": path escapes the root/],
      ['a hard link climbing out', [[{ name: 'x', type: 'link', linkname: '../../etc/passwd' }]], /entry "x": hard link target "\.\.\/\.\.\/etc\/passwd" escapes/],
      ['a hard link to an absolute host path', [[{ name: 'y', type: 'link', linkname: '/etc/passwd' }]], /entry "y": hard link target "\/etc\/passwd" does not exist in the root/],
      [
        'a hard link through a symlink to the host',
        [[{ name: 'hl', type: 'symlink', linkname: '/etc' }], [{ name: 'z', type: 'link', linkname: 'hl/passwd' }]],
        /entry "z": hard link target "hl\/passwd" does not exist in the root/,
      ],
      // Whiteouts whose target is empty, "." or "..": containerd refuses the layer; so do we.
      ['a very long name climbing out, quoted short', [[file(`../${'a'.repeat(5000)}`, 'x')]], /entry "\.\.\/a{197}… \(5003 characters\)": path escapes the root/],
      ['a whiteout of nothing (.wh.)', [[file('a', 'lower\n')], [{ name: '.wh.', type: 'file' }]], /entry "\.wh\.": whiteout "\.wh\." names no entry/],
      ['a whiteout of the root (.wh..)', [[file('a', 'lower\n')], [{ name: '.wh..', type: 'file' }]], /entry "\.wh\.\.": whiteout "\.wh\.\." names no entry \(its target would be "\."\)/],
      ["a whiteout of the output's parent (.wh...)", [[file('a', 'lower\n')], [{ name: '.wh...', type: 'file' }]], /entry "\.wh\.\.\.": whiteout "\.wh\.\.\." names no entry \(its target would be "\.\."\)/],
      ['a whiteout of its own directory (sub/.wh..)', [[dir('sub'), file('sub/x', 'x\n')], [{ name: 'sub/.wh..', type: 'file' }]], /entry "sub\/\.wh\.\.": whiteout "\.wh\.\." names no entry/],
      ['a whiteout of the root from below (sub/.wh...)', [[dir('sub'), file('sub/x', 'x\n')], [{ name: 'sub/.wh...', type: 'file' }]], /entry "sub\/\.wh\.\.\.": whiteout/],
    ];
    it.each(cases)('%s', async (_label, layerEntries, message) => {
      const built: BuiltLayer[] = [];
      for (const entries of layerEntries) built.push(await rawLayer(entries, T1));
      const m = await builder.image({ format: 'oci', layers: built });
      const out = join(work, `escape-${sha(_label).slice(7, 15)}`);
      const bad = built[built.length - 1]!;
      const err = await unpackImage({ image: { input: 'evil/img:1', ref: { registry: 'docker.io', repository: 'evil/img', tag: '1' }, root: m }, cache: builder.cache, out }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).toContain(`layer ${bad.digest}`);
      expect(existsSync(out)).toBe(false);
      expect((await readdir(work)).filter((n) => n.startsWith(`.${basename(out)}.partial-`))).toEqual([]);
      expect(existsSync(join(dirname(work), 'evil'))).toBe(false);
      // The output's parent and its other children are untouched.
      expect(await readFile(join(work, 'canary'), 'utf8')).toBe('canary\n');
      expect(existsSync(join(work, 'cache'))).toBe(true);
    });
  });

  it('the write guard: strictly inside the root, by resolved path with a trailing separator', () => {
    expect(strictlyInside('/a/b/rootfs', '/a/b/rootfs/x')).toBe(true);
    expect(strictlyInside('/a/b/rootfs/', '/a/b/rootfs/x/../y')).toBe(true);
    expect(strictlyInside('/a/b/rootfs', '/a/b/rootfs')).toBe(false);
    expect(strictlyInside('/a/b/rootfs', '/a/b/rootfs/.')).toBe(false);
    expect(strictlyInside('/a/b/rootfs', '/a/b/rootfs/..')).toBe(false);
    expect(strictlyInside('/a/b/rootfs', '/a/b/rootfs/x/../../c')).toBe(false);
    expect(strictlyInside('/a/b/rootfs', '/a/b/rootfs2/x')).toBe(false);
    expect(strictlyInside('/a/b/rootfs', '/a/b')).toBe(false);
    expect(['.wh.', '.wh..', '.wh...', '.wh.x', '.wh....'].map(whiteoutTarget)).toEqual([null, null, null, 'x', '...']);
  });

  it('unpacks a real zstd layer where Node has zstd, and says which Node it needs where it has not', async () => {
    const l = await rawLayer([file('hello', 'zstd tar\n')], T1);
    const dir = join(work, 'zstd-src');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'layer.tar'), l.tar);
    await runOk('zstd', ['-q', '-f', join(dir, 'layer.tar'), '-o', join(dir, 'layer.tar.zst')]);
    const m = await builder.image({ format: 'oci', layers: [l], uncompressedLayers: true });
    m.layers[0] = await builder.blob(await readFile(join(dir, 'layer.tar.zst')), 'application/vnd.oci.image.layer.v1.tar+zstd');
    const out = join(work, 'zstd');
    const unpacking = unpackImage({ image: { input: 'z/z:1', ref: { registry: 'docker.io', repository: 'z/z', tag: '1' }, root: m }, cache: builder.cache, out });
    const zlib = await import('node:zlib');
    if ('createZstdDecompress' in zlib) {
      await unpacking;
      expect(await readFile(join(out, 'hello'), 'utf8')).toBe('zstd tar\n');
    } else {
      await expect(unpacking).rejects.toThrow(/zstd-compressed.*Node\.js 22\.15 or later/);
      expect(existsSync(out)).toBe(false);
    }
  });
});
