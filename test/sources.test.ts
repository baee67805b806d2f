// Issue 13, parsers: Kubefiles (hostile ones too), COPY globs, sealer build contexts, skopeo sync
// YAML, tag selection and tags/list Link headers. No registry needed.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKubefile, substitute, MAX_EXPANDED_CHARS, MAX_KUBEFILE_BYTES } from '../src/inputs/kubefile.js';
import { expandGlob, globToRegExp } from '../src/inputs/glob.js';
import { readInputs } from '../src/inputs/index.js';
import { selectTags, tagVersion } from '../src/resolve/tags.js';
import { nextPagePath } from '../src/registry/client.js';
import { checkLayoutNames, layoutRepository } from '../src/link/registry.js';
import { parseReference } from '../src/ref/reference.js';
import { collectInputs } from '../src/api/inputs.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'ocisave-sources-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function files(root: string, tree: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(tree)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

describe('Kubefile parser', () => {
  it('reads FROM, ARG defaults and --build-arg, continuations, comments and COPY forms', () => {
    const k = parseKubefile(
      [
        '# a comment',
        'ARG REG=ghcr.io',
        'ARG VERSION',
        'from ${REG}/cluster/kubernetes:${VERSION:-v1.19.8} AS base',
        'ARG DIR=apps',
        'COPY --chown=1:1 $DIR/*.yaml \\',
        '  # a comment inside the continuation',
        '  extra.yaml manifests/',
        'COPY ["my chart", "charts"]',
        'ADD \\$HOME/x manifests',
        'LABEL a=b',
        'ENV SUB=tools',
        'COPY ${SUB}/list manifests/imageList',
        'COPY --from=builder /x manifests',
        'RUN curl -H "Authorization: secret" https://example.invalid',
        'CMD ["kubectl apply -f manifests"]',
        'COPY https://u:p@example.invalid/a.yaml?t=1 manifests',
      ].join('\n'),
      { buildArgs: { REG: '127.0.0.1:5000', UNUSED: 'x' } },
    );
    expect(k.bases).toEqual([{ ref: '127.0.0.1:5000/cluster/kubernetes:v1.19.8', line: 4 }]);
    expect(k.copies).toEqual([
      { sources: ['apps/*.yaml', 'extra.yaml'], dest: 'manifests/', line: 6, keyword: 'COPY' },
      { sources: ['my chart'], dest: 'charts', line: 9, keyword: 'COPY' },
      { sources: ['$HOME/x'], dest: 'manifests', line: 10, keyword: 'ADD' },
      { sources: ['tools/list'], dest: 'manifests/imageList', line: 13, keyword: 'COPY' },
    ]);
    expect(k.notFollowed).toEqual([
      'Kubefile:14: COPY --from=builder not followed (it copies from another image)',
      'Kubefile:15: RUN not followed',
      'Kubefile:16: CMD not followed',
      'Kubefile:17: COPY from https://example.invalid/a.yaml not followed (only files of the build context are read)',
    ]);
    expect(k.notFollowed.join('\n')).not.toMatch(/secret|u:p|t=1/);
    expect(k.unusedBuildArgs).toEqual(['UNUSED']);
  });

  it('substitutes once: a variable naming itself, or two naming each other, cannot loop', () => {
    const k = parseKubefile('ARG A=${A}x\nARG A=${A}y\nARG B=$C\nARG C=$B\nFROM r.invalid/$A:$B-$C');
    expect(k.bases[0]!.ref).toBe('r.invalid/xy:-');
    expect(substitute('${X:+set}${Y:-unset}\\$Z', new Map([['X', '1']]), 'w')).toBe('setunset$Z');
  });

  it('stops ARGs that grow with each line, and oversized files, with a message naming the line', () => {
    const doubling = ['ARG A=0123456789abcdef'];
    for (let i = 0; i < 20; i++) doubling.push(`ARG A=\${A}\${A}`);
    doubling.push('FROM r.invalid/x:$A');
    expect(() => parseKubefile(doubling.join('\n'))).toThrow(new RegExp(`^Kubefile:1[0-9]: expands to more than ${MAX_EXPANDED_CHARS} characters`));
    // Many lines each under the per-line cap still hit the total.
    const wide = ['ARG A=' + 'a'.repeat(60_000)];
    for (let i = 0; i < 100; i++) wide.push(`ARG B${i}=$A`);
    expect(() => parseKubefile(wide.join('\n'))).toThrow(/expands to more than 4194304 characters in all/);
    expect(() => parseKubefile('#'.repeat(MAX_KUBEFILE_BYTES + 1))).toThrow(/larger than 1048576 bytes/);
    expect(() => parseKubefile('FROM ${A')).toThrow(/Kubefile:1: "\$\{" without its closing "\}"/);
    expect(() => parseKubefile('FROM ${A!}')).toThrow(/Kubefile:1: bad substitution/);
    const nested = `FROM ${'${A:-'.repeat(40)}x${'}'.repeat(40)}`;
    expect(() => parseKubefile(nested)).toThrow(/nested deeper than 16/);
    expect(() => parseKubefile('COPY manifests')).toThrow(/Kubefile:1: COPY needs a source and a destination/);
  });
});

describe('COPY globs', () => {
  it('matches *, ?, [..] within a component and ** across them', () => {
    expect(globToRegExp('a/*.yaml').test('a/x.yaml')).toBe(true);
    expect(globToRegExp('a/*.yaml').test('a/b/x.yaml')).toBe(false);
    expect(globToRegExp('a/**/*.yml').test('a/x.yml')).toBe(true);
    expect(globToRegExp('a/**/*.yml').test('a/b/c/x.yml')).toBe(true);
    expect(globToRegExp('v?.[0-9]').test('v1.5')).toBe(true);
    expect(globToRegExp('v[!0-9]').test('v5')).toBe(false);
  });

  it('expands inside the root, sorted, a matching directory whole', async () => {
    const root = join(tmp, 'glob');
    await files(root, { 'apps/a.yaml': '', 'apps/b.yaml': '', 'apps/c.json': '', 'apps/sub/d.yaml': '', 'apps/x.yaml/inner.yaml': '' });
    expect(expandGlob(root, 'apps/*.yaml')).toEqual(['apps/a.yaml', 'apps/b.yaml', 'apps/x.yaml']);
    expect(expandGlob(root, 'apps/**/*.yaml')).toEqual(['apps/a.yaml', 'apps/b.yaml', 'apps/sub/d.yaml', 'apps/x.yaml']);
    expect(expandGlob(root, 'nothing/*')).toEqual([]);
  });
});

describe('sealer build contexts', () => {
  it('without a Kubefile: manifests/, charts/ and imageList', async () => {
    const ctx = join(tmp, 'plain-ctx');
    await files(ctx, {
      'manifests/pod.yaml': 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: ghcr.io/a/pod:1\n',
      'manifests/kustomization.yaml': 'resources: [pod.yaml]\n',
      'charts/mini/Chart.yaml': 'apiVersion: v2\nname: mini\nversion: 0.1.0\n',
      'charts/mini/values.yaml': 'image:\n  repository: ghcr.io/a/chart\n  tag: "2"\n',
      imageList: '# list\nghcr.io/a/list:3 # trailing\n',
      'other/ignored.yaml': 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: ghcr.io/a/ignored:1\n',
    });
    const set = await readInputs(ctx);
    expect(set.refs.map((r) => r.ref).sort()).toEqual(['ghcr.io/a/chart:2', 'ghcr.io/a/list:3', 'ghcr.io/a/pod:1']);
    expect(set.warnings).toEqual([]);
  });

  it('COPY of a directory to the root scans its manifests/ and charts/ only', async () => {
    const ctx = join(tmp, 'root-ctx');
    await files(ctx, {
      Kubefile: 'FROM scratch\nCOPY . .\nCOPY app/manifests /\n',
      'manifests/pod.yaml': 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: ghcr.io/a/root:1\n',
      'app/manifests/pod.yaml': 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: ghcr.io/a/lands-in-root:1\n',
      'other/pod.yaml': 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: ghcr.io/a/other:1\n',
    });
    expect((await readInputs(ctx)).refs.map((r) => r.ref)).toEqual(['ghcr.io/a/root:1']);
  });

  it('refuses COPY sources outside the context, by .. or by a symbolic link', async () => {
    const ctx = join(tmp, 'escape-ctx');
    await files(ctx, { Kubefile: 'FROM scratch\nCOPY ../secret manifests\n' });
    await expect(readInputs(ctx)).rejects.toThrow(/Kubefile:2: COPY source \.\.\/secret is outside the build context/);
    await writeFile(join(tmp, 'outside.yaml'), 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: ghcr.io/a/outside:1\n');
    await symlink(join(tmp, 'outside.yaml'), join(ctx, 'link.yaml'));
    await writeFile(join(ctx, 'Kubefile'), 'FROM scratch\nCOPY link.yaml manifests\n');
    await expect(readInputs(ctx)).rejects.toThrow(/link\.yaml leads outside the build context/);
    await writeFile(join(ctx, 'Kubefile'), 'FROM scratch\nCOPY apps/*.yaml manifests\n');
    await expect(readInputs(ctx)).rejects.toThrow(/Kubefile:2: COPY source apps\/\*\.yaml matches nothing/);
  });

  it('a directory that is neither chart nor context is refused, naming what was expected', async () => {
    await mkdir(join(tmp, 'empty-dir'));
    await expect(readInputs(join(tmp, 'empty-dir'))).rejects.toThrow(/without Chart\.yaml, Kubefile, manifests\/, charts\/ or imageList/);
  });
});

describe('skopeo sync YAML', () => {
  const yaml = [
    'registry.example.com:',
    '  images:',
    '    busybox: []',
    '    redis:',
    '      - "1.0"',
    '      - 1.10',
    '      - "sha256:0000000000000000000000000000000011111111111111111111111111111111"',
    '  images-by-tag-regex:',
    '    nginx: ^1\\.13\\.[12]-alpine-perl$',
    '  images-by-semver:',
    '    alpine: ">= 3.12.0"',
    '  credentials:',
    '    username: john',
    '    password: this is a secret',
    '  tls-verify: true',
    '  cert-dir: /home/john/certs',
    'quay.io:',
    '  tls-verify: false',
    '  images:',
    '    coreos/etcd:',
    '      - latest',
    '',
  ].join('\n');

  it("reads skopeo-sync(1)'s example: references, tag rules, credentials for that registry, hostOptions", async () => {
    const f = join(tmp, 'sync.yml');
    await writeFile(f, yaml);
    const set = await readInputs(f);
    expect(set.refs.map((r) => r.ref)).toEqual([
      'registry.example.com/redis:1.0',
      'registry.example.com/redis:1.10',
      'registry.example.com/redis@sha256:0000000000000000000000000000000011111111111111111111111111111111',
      'quay.io/coreos/etcd:latest',
    ]);
    expect(set.tagSets.map((t) => [t.repository, t.selector])).toEqual([
      ['registry.example.com/busybox', {}],
      ['registry.example.com/nginx', { regex: '^1\\.13\\.[12]-alpine-perl$' }],
      ['registry.example.com/alpine', { semver: '>= 3.12.0' }],
    ]);
    expect([...set.credentials]).toEqual([['registry.example.com', { username: 'john', password: 'this is a secret' }]]);
    expect(set.hostOptions).toEqual({ 'registry.example.com': { tlsVerify: true, certDir: '/home/john/certs' }, 'quay.io': { tlsVerify: false } });
    // The CLI hands the map on, as hostOptions, to the engine.
    const collected = await collectInputs([], [f]);
    expect(collected.hostOptions).toEqual(set.hostOptions);
    expect(collected.credentials.get('registry.example.com')).toEqual({ username: 'john', password: 'this is a secret' });
  });

  it('bad entries name the file, registry and key, never a password', async () => {
    const f = join(tmp, 'bad-sync.yml');
    await writeFile(f, 'r.invalid:\n  images-by-tag-regex:\n    x: "(unclosed"\n');
    await expect(readInputs(f)).rejects.toThrow(/bad-sync\.yml: r\.invalid images-by-tag-regex x: invalid tag regex/);
    await writeFile(f, 'r.invalid:\n  images: {x: []}\n  credentials: {username: u}\n');
    await expect(readInputs(f)).rejects.toThrow(/r\.invalid credentials: needs both username and password/);
    await writeFile(f, 'r.invalid:\n  images: {x: []}\n  tls-verify: "no"\n  credentials: {username: u, password: hunter2}\n');
    const err = await readInputs(f).catch((e: Error) => e);
    expect(String(err)).toMatch(/r\.invalid tls-verify: expected true or false/);
    expect(String(err)).not.toMatch(/hunter2/);
    await writeFile(f, 'r.invalid:\n  images: {x: []}\n  tls_verify: false\n');
    await expect(readInputs(f)).rejects.toThrow(/unknown key "tls_verify"/);
  });
});

describe('tag selection', () => {
  const tags = ['latest', 'v1.9.0', '1.10', 'v1.10.1', '1.10.2-rc.1', '2.0.0', 'nightly', 'v1.2'];

  it('regex (unanchored, as Go MatchString), semver range, newest N, and their combination', () => {
    expect(selectTags(tags, {})).toEqual(tags);
    expect(selectTags(tags, { regex: '1\\.10' })).toEqual(['1.10', 'v1.10.1', '1.10.2-rc.1']);
    expect(selectTags(tags, { semver: '>=1.10.0 <2' })).toEqual(['1.10', 'v1.10.1']);
    expect(selectTags(tags, { semver: '>= 1.2, < 1.10' })).toEqual(['v1.9.0', 'v1.2']);
    expect(selectTags(tags, { newest: 2 })).toEqual(['v1.10.1', '2.0.0']);
    expect(selectTags(tags, { regex: '^v', newest: 1 })).toEqual(['v1.10.1']);
    expect(tagVersion('latest')).toBeNull();
    expect(tagVersion('v1.2')?.version).toBe('1.2.0');
    expect(() => selectTags(tags, { semver: 'not a range' })).toThrow(/invalid semver range "not a range"/);
  });
});

describe('tags/list Link header', () => {
  const base = 'http://127.0.0.1:5000';
  const ep = '/v2/a/b/tags/list';
  it('follows rel="next" on the same registry and endpoint only', () => {
    expect(nextPagePath('</v2/a/b/tags/list?last=x&n=100>; rel="next"', base, ep, 'r')).toBe('/v2/a/b/tags/list?last=x&n=100');
    expect(nextPagePath('<http://127.0.0.1:5000/v2/a/b/tags/list?last=y>; rel=next', base, ep, 'r')).toBe('/v2/a/b/tags/list?last=y');
    expect(nextPagePath(undefined, base, ep, 'r')).toBeUndefined();
    expect(nextPagePath('</v2/a/b/tags/list?last=z>; rel="prev"', base, ep, 'r')).toBeUndefined();
    expect(() => nextPagePath('<http://evil.invalid/v2/a/b/tags/list?last=x>; rel="next"', base, ep, 'r')).toThrow(/points away/);
    expect(() => nextPagePath('</v2/other/tags/list?last=x>; rel="next"', base, ep, 'r')).toThrow(/points away/);
  });
});

describe('registry layout names', () => {
  const item = (input: string) => ({ input, ref: parseReference(input) });
  it('the same repo:tag from two registries is refused unless scoped; digests never collide', () => {
    const both = [item('127.0.0.1:5000/x/y:1'), item('127.0.0.1:5001/x/y:1')];
    expect(() => checkLayoutNames(both, false)).toThrow(
      '127.0.0.1:5000/x/y:1 and 127.0.0.1:5001/x/y:1 would both be saved as x/y:1 in the registry layout; pass --scoped to keep each source host in the repository path, or save them into separate bundles',
    );
    expect(() => checkLayoutNames(both, true)).not.toThrow();
    expect(() => checkLayoutNames([item('a.invalid/x/y:1'), item('a.invalid/x/y:1'), item(`b.invalid/x/y@sha256:${'1'.repeat(64)}`)], false)).not.toThrow();
    expect(layoutRepository(parseReference('127.0.0.1:5000/x/y:1'), true)).toBe('127.0.0.1_5000/x/y');
    expect(layoutRepository(parseReference('alpine'), true)).toBe('docker.io/library/alpine');
  });
});
