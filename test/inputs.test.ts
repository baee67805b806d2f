import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseImageList, looksLikeImageRef } from '../src/inputs/imagelist.js';
import { parseKubeYaml } from '../src/inputs/kube.js';
import { readHelmChart } from '../src/inputs/helm.js';
import { readReferenceInputs } from '../src/inputs/index.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const DIGEST2 = `sha256:${'b'.repeat(64)}`;

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'ocisave-inputs-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function writeTree(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, name)), { recursive: true });
    await writeFile(join(root, name), content);
  }
}

/** A real gzip'd tar, as `helm package` makes: every path under one top directory. */
async function makeTgz(files: Record<string, string | Buffer>): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    p.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    p.on('end', () => resolve());
    p.on('error', reject);
  });
  for (const [name, content] of Object.entries(files)) {
    await new Promise<void>((resolve, reject) => p.entry({ name }, content, (err) => (err ? reject(err) : resolve())));
  }
  p.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

describe('image list', () => {
  it('skips comments and blank lines, trims, tolerates CRLF and a BOM, keeps line numbers', () => {
    const text = '\uFEFF# header\r\n\r\n  nginx:1.25  \r\nquay.io/a/b@' + DIGEST + ' # pinned\r\n\t# indented comment\r\nfoo#bar\r\nlocalhost:5000/x\tbusy # c';
    expect(parseImageList(text, 'list.txt')).toEqual([
      { ref: 'nginx:1.25', line: 3, source: 'list.txt:3' },
      { ref: `quay.io/a/b@${DIGEST}`, line: 4, source: 'list.txt:4' },
      // `#` glued to text is not a comment: the reference parser reports it.
      { ref: 'foo#bar', line: 6, source: 'list.txt:6' },
      { ref: 'localhost:5000/x\tbusy', line: 7, source: 'list.txt:7' },
    ]);
  });

  it('returns nothing for an empty or comment-only file', () => {
    expect(parseImageList('', 'x')).toEqual([]);
    expect(parseImageList('# only\n\n   \n', 'x')).toEqual([]);
  });
});

describe('looksLikeImageRef', () => {
  it('accepts references and rejects URLs and prose', () => {
    for (const ok of ['nginx', 'nginx:1.25', 'docker.io/bitnami/mysql:8.0', 'localhost:5000/a/b', `a/b@${DIGEST}`, `a:1@${DIGEST}`, '[::1]:5000/x:y']) {
      expect(looksLikeImageRef(ok), ok).toBe(true);
    }
    for (const bad of ['https://github.com/x/y', 'Nginx', 'a b', '', 'a:', 'IfNotPresent', 'x:{{ .Values.tag }}']) {
      expect(looksLikeImageRef(bad), bad).toBe(false);
    }
  });
});

describe('Kubernetes YAML', () => {
  const yaml = [
    'apiVersion: apps/v1',
    'kind: Deployment',
    'metadata: {name: web}',
    'spec:',
    '  template:',
    '    spec:',
    '      initContainers:',
    '        - name: init',
    '          image: busybox:1.36 # comment',
    '      containers:',
    '        - name: web',
    `          image: "nginx@${DIGEST}"`,
    '        - name: sidecar',
    '          image: &side envoyproxy/envoy:v1.30',
    '---',
    'apiVersion: batch/v1',
    'kind: CronJob',
    'spec:',
    '  jobTemplate:',
    '    spec:',
    '      template:',
    '        spec:',
    '          containers: [{name: c, image: registry.k8s.io/pause:3.9}]',
    '---',
    '# a document that is only a comment',
    '---',
    'just a string',
    '---',
    '- a',
    '- list',
    '---',
    'apiVersion: v1',
    'kind: List',
    'items:',
    '  - apiVersion: v1',
    '    kind: Pod',
    '    spec:',
    '      containers: [{name: a, image: &lst ghcr.io/acme/list:1}]',
    '      ephemeralContainers:',
    '        - name: debug',
    '          image: 8.0',
    '  - {kind: Pod, spec: {containers: [{name: b, image: *lst}]}}',
    '---',
    'apiVersion: example.com/v1',
    'kind: Whatever',
    'spec:',
    '  deep:',
    '    podTemplate:',
    '      containers:',
    '        - image: ghcr.io/acme/tool:2',
    '        - name: no-image',
    '      somethingElse:',
    '        image: not-a-container:1',
    '',
  ].join('\r\n');

  it('finds every container image in every kind, with lines', () => {
    expect(parseKubeYaml(yaml, 'm.yaml')).toEqual([
      { ref: `nginx@${DIGEST}`, line: 12, source: 'm.yaml:12' },
      { ref: 'envoyproxy/envoy:v1.30', line: 14, source: 'm.yaml:14' },
      { ref: 'busybox:1.36', line: 9, source: 'm.yaml:9' },
      { ref: 'registry.k8s.io/pause:3.9', line: 23, source: 'm.yaml:23' },
      { ref: 'ghcr.io/acme/list:1', line: 38, source: 'm.yaml:38' },
      // A numeric-looking image keeps its text.
      { ref: '8.0', line: 41, source: 'm.yaml:41' },
      // An alias reports the line of its anchor.
      { ref: 'ghcr.io/acme/list:1', line: 38, source: 'm.yaml:38' },
      { ref: 'ghcr.io/acme/tool:2', line: 50, source: 'm.yaml:50' },
    ]);
  });

  it('reports a syntax error with file and line', () => {
    const bad = 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: "unterminated\n';
    expect(() => parseKubeYaml(bad, 'broken.yaml')).toThrow(/^broken\.yaml:\d+:\d+: YAML syntax error/);
    const bad2 = 'apiVersion: v1\nkind: Pod\nspec:\n  containers: [\n    {image: a}\n  - b: c\n';
    expect(() => parseKubeYaml(bad2, 'b2.yaml')).toThrow(/b2\.yaml:\d+:\d+: YAML syntax error/);
  });

  it('rejects an alias to an anchor of another document', () => {
    const text = 'kind: Pod\nspec: {containers: [{image: &a x:1}]}\n---\nkind: Pod\nspec: {containers: [{image: *a}]}\n';
    expect(() => parseKubeYaml(text, 'al.yaml')).toThrow(/^al\.yaml:5:\d+: YAML syntax error: .*alias.*\ba\b/);
  });

  it('does not quote the offending line (manifests can hold Secrets)', () => {
    const bad = 'apiVersion: v1\nkind: Secret\nstringData:\n  password: "hunter2\n';
    let msg = '';
    try {
      parseKubeYaml(bad, 's.yaml');
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/^s\.yaml:/);
    expect(msg).not.toContain('hunter2');
  });
});

describe('Helm charts', () => {
  const subValues = [
    'image:',
    '  registry: docker.io',
    '  repository: bitnami/mysql',
    '  tag: 8.0',
    '  digest: ""',
    'metrics:',
    '  image:',
    '    registry: docker.io',
    '    repository: bitnami/mysqld-exporter',
    '    tag: 0.15.1',
    `    digest: ${DIGEST2}`,
    '',
  ].join('\n');

  const parentFiles = (): Record<string, string> => ({
    'Chart.yaml': [
      'apiVersion: v2',
      'name: app',
      'version: 1.0.0',
      'appVersion: 1.10', // YAML would make this the number 1.1
      'dependencies:',
      '  - name: mysql',
      '    version: 9.x',
      '    repository: https://charts.bitnami.com/bitnami',
      '  - name: redis',
      '    alias: cache',
      '    repository: oci://registry-1.docker.io/bitnamicharts',
      'annotations:',
      '  artifacthub.io/images: |',
      '    - name: app',
      '      image: ghcr.io/acme/app:1.10',
      '    - name: helper',
      '      image: ghcr.io/acme/helper:0.3',
      '',
    ].join('\n'),
    'values.yaml': [
      '# default values',
      'image:',
      '  repository: ghcr.io/acme/app',
      '  tag: ""   # defaults to appVersion',
      '  pullPolicy: IfNotPresent',
      'worker:',
      '  image: { repository: ghcr.io/acme/worker, tag: 2.0 }',
      'pinned:',
      `  image: { repository: ghcr.io/acme/pinned, digest: "${DIGEST}" }`,
      'sidecars:',
      '  - name: proxy',
      '    image: "envoyproxy/envoy:v1.30"',
      'initImage: busybox:1.36',
      'git:',
      '  repository: https://github.com/acme/app.git',
      'templated:',
      '  image: "{{ .Values.global.registry }}/x:1"',
      'mysql:',
      '  image:',
      '    tag: 8.4', // the parent pins the subchart's tag
      'cache:', // values for the redis dependency, under its alias
      '  image:',
      '    tag: "7.2"',
      '',
    ].join('\r\n'),
    'templates/deployment.yaml': [
      'spec:',
      '  containers:',
      '    - name: a',
      '      image: {{ .Values.image.repository }}:{{ .Values.image.tag }}',
      '    - name: b',
      '      image: "quay.io/prometheus/node-exporter:v1.8.0"',
      '    - image: docker.io/library/alpine:3.20 # literal',
      '      imagePullPolicy: Always',
      '',
    ].join('\n'),
    'templates/_helpers.tpl': '{{- define "x" -}}\nimage: {{ .Values.x }}\n{{- end -}}\n',
    'templates/NOTES.txt': 'image: notes/ignored:1\n',
    'charts/mysql/Chart.yaml': 'apiVersion: v2\nname: mysql\nversion: 9.0.0\nappVersion: 8.0.36\n',
    'charts/mysql/values.yaml': subValues,
    'charts/mysql/templates/sts.yaml': 'image: {{ include "mysql.image" . }}\n',
  });

  const expectedRefs = [
    'ghcr.io/acme/app:1.10',
    'ghcr.io/acme/helper:0.3',
    'ghcr.io/acme/worker:2.0',
    `ghcr.io/acme/pinned@${DIGEST}`,
    'envoyproxy/envoy:v1.30',
    'busybox:1.36',
    'quay.io/prometheus/node-exporter:v1.8.0',
    'docker.io/library/alpine:3.20',
    'docker.io/bitnami/mysql:8.4',
    `docker.io/bitnami/mysqld-exporter:0.15.1@${DIGEST2}`,
    'bitnami/redis:7.2',
    'redis-extra:1',
  ];

  async function redisTgz(): Promise<Buffer> {
    // The subchart of a subchart, packaged inside the packaged redis chart.
    const inner = await makeTgz({
      'common/Chart.yaml': 'apiVersion: v2\nname: common\nversion: 2.0.0\ntype: library\n',
      'common/templates/x.yaml': "image: 'redis-extra:1'\n",
    });
    return makeTgz({
      'redis/Chart.yaml': 'apiVersion: v2\nname: redis\nversion: 19.0.0\nappVersion: 7.2.5\n',
      'redis/values.yaml': 'image:\n  registry: ""\n  repository: bitnami/redis\n  tag: ""\n',
      'redis/charts/common-2.0.0.tgz': inner,
    });
  }

  it('reads a chart directory with an unpacked and a packaged dependency', async () => {
    const dir = join(tmp, 'chartdir');
    await writeTree(dir, { ...parentFiles(), 'charts/redis-19.0.0.tgz': await redisTgz() });
    const refs = await readHelmChart(dir);
    expect(refs.map((r) => r.ref)).toEqual(expectedRefs);
    const bySource = Object.fromEntries(refs.map((r) => [r.ref, r.source]));
    expect(bySource['ghcr.io/acme/app:1.10']).toBe(`${dir}/Chart.yaml (artifacthub.io/images)`);
    expect(bySource['ghcr.io/acme/worker:2.0']).toBe(`${dir}/values.yaml (.worker.image)`);
    expect(bySource['docker.io/library/alpine:3.20']).toBe(`${dir}/templates/deployment.yaml:7`);
    expect(bySource['docker.io/bitnami/mysql:8.4']).toBe(`${dir}/charts/mysql/values.yaml (.image)`);
    expect(bySource['redis-extra:1']).toBe(`${dir}/charts/redis-19.0.0.tgz#redis/charts/common-2.0.0.tgz#common/templates/x.yaml:1`);
  });

  it('reads the same chart packaged as a .tgz', async () => {
    const files: Record<string, string | Buffer> = {};
    for (const [k, v] of Object.entries(parentFiles())) files[`app/${k}`] = v;
    files['app/charts/redis-19.0.0.tgz'] = await redisTgz();
    const tgz = join(tmp, 'app-1.0.0.tgz');
    await writeFile(tgz, await makeTgz(files));
    const refs = await readHelmChart(tgz);
    expect(refs.map((r) => r.ref)).toEqual(expectedRefs);
    expect(refs[0]!.source).toBe(`${tgz}#app/Chart.yaml (artifacthub.io/images)`);
  });

  it('uses the subchart defaults when the parent does not override them', async () => {
    const dir = join(tmp, 'plain');
    await writeTree(dir, {
      'Chart.yaml': 'apiVersion: v2\nname: plain\nversion: 0.1.0\n',
      'charts/mysql/Chart.yaml': 'apiVersion: v2\nname: mysql\nversion: 9.0.0\n',
      'charts/mysql/values.yaml': subValues,
    });
    expect((await readHelmChart(dir)).map((r) => r.ref)).toEqual([
      'docker.io/bitnami/mysql:8.0',
      `docker.io/bitnami/mysqld-exporter:0.15.1@${DIGEST2}`,
    ]);
  });

  it('applies YAML anchors and merge keys in values and dedupes', async () => {
    const dir = join(tmp, 'anchors');
    await writeTree(dir, {
      'Chart.yaml': 'apiVersion: v2\nname: anchors\nversion: 0.1.0\nappVersion: "3"\nannotations:\n  helm.sh/images: |\n    - name: a\n      image: ghcr.io/x/base:3\n',
      'values.yaml': [
        'base: &base',
        '  repository: ghcr.io/x/base',
        'one:',
        '  image: *base',
        'two:',
        '  image:',
        '    <<: *base',
        '    tag: "4"',
        '',
      ].join('\n'),
    });
    expect((await readHelmChart(dir)).map((r) => r.ref)).toEqual(['ghcr.io/x/base:3', 'ghcr.io/x/base:4']);
  });

  it('reports a YAML error in values.yaml with the file and line', async () => {
    const dir = join(tmp, 'badvalues');
    await writeTree(dir, {
      'Chart.yaml': 'apiVersion: v2\nname: bad\nversion: 0.1.0\n',
      'values.yaml': 'image:\n  repository: a\n   tag: [1\n',
    });
    await expect(readHelmChart(dir)).rejects.toThrow(new RegExp(`^${dir}/values\\.yaml:\\d+:\\d+: YAML syntax error`));
  });

  it('follows symbolic links that stay inside the chart, and refuses one that leaves it', async () => {
    const dir = join(tmp, 'linked');
    await writeTree(dir, {
      'Chart.yaml': 'apiVersion: v2\nname: linked\nversion: 0.1.0\n',
      'values.yaml': 'image: nginx:1.25\n',
      'templates/deploy.yaml': 'kind: Pod\n',
    });
    await writeFile(join(tmp, 'outside.yaml'), 'image: host-secret.invalid/leak:1\n');
    await symlink('../values.yaml', join(dir, 'templates', 'inside.yaml'));
    expect((await readHelmChart(dir)).map((r) => r.ref)).toEqual(['nginx:1.25']);
    for (const [name, target] of [
      ['templates/outside.yaml', join(tmp, 'outside.yaml')],
      ['values.yaml', join(tmp, 'outside.yaml')],
      ['templates/dir', tmp],
    ] as const) {
      const bad = join(tmp, `linked-out-${name.replace(/\W/g, '-')}`);
      await writeTree(bad, { 'Chart.yaml': 'apiVersion: v2\nname: out\nversion: 0.1.0\n', 'templates/ok.yaml': 'kind: Pod\n' });
      await symlink(target, join(bad, name));
      const err = await readHelmChart(bad).catch((e: Error) => e);
      expect(err, name).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/is a symbolic link to outside the chart .*; refused$/);
      expect((err as Error).message).not.toContain('leak');
    }
  });

  it('rejects an archive that is not a chart', async () => {
    const tgz = join(tmp, 'notachart.tgz');
    await writeFile(tgz, await makeTgz({ 'x/readme.md': 'hi' }));
    await expect(readHelmChart(tgz)).rejects.toThrow(/notachart\.tgz is not a Helm chart archive/);
    const junk = join(tmp, 'junk.tgz');
    await writeFile(junk, 'not gzip at all');
    await expect(readHelmChart(junk)).rejects.toThrow(/cannot read Helm chart archive .*junk\.tgz/);
  });
});

describe('readReferenceInputs', () => {
  it('detects an image list', async () => {
    const f = join(tmp, 'images.txt');
    await writeFile(f, 'nginx:1.25\n# c\nnginx:1.25\nalpine\n');
    expect(await readReferenceInputs(f)).toEqual([
      { ref: 'nginx:1.25', source: `${f}:1` },
      { ref: 'alpine', source: `${f}:4` },
    ]);
  });

  it('detects Kubernetes YAML by content, whatever the name', async () => {
    const f = join(tmp, 'manifest.txt');
    await writeFile(f, 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - image: nginx:1.25\n');
    expect(await readReferenceInputs(f)).toEqual([{ ref: 'nginx:1.25', source: `${f}:5` }]);
  });

  it('reports a broken Kubernetes file as a YAML error, not as an image list', async () => {
    const f = join(tmp, 'broken.yaml');
    await writeFile(f, 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - image: "nginx\n');
    await expect(readReferenceInputs(f)).rejects.toThrow(new RegExp(`^${f}:\\d+:\\d+: YAML syntax error`));
  });

  it('detects chart directories and archives (by name or by gzip magic)', async () => {
    const dir = join(tmp, 'mini');
    await writeTree(dir, {
      'Chart.yaml': 'apiVersion: v2\nname: mini\nversion: 0.1.0\nappVersion: "1.0"\n',
      'values.yaml': 'image:\n  repository: ghcr.io/x/mini\n',
    });
    expect(await readReferenceInputs(dir)).toEqual([{ ref: 'ghcr.io/x/mini:1.0', source: `${dir}/values.yaml (.image)` }]);
    const archive = await makeTgz({
      'mini/Chart.yaml': 'apiVersion: v2\nname: mini\nversion: 0.1.0\nappVersion: "1.0"\n',
      'mini/values.yaml': 'image:\n  repository: ghcr.io/x/mini\n',
    });
    for (const name of ['mini-0.1.0.tar.gz', 'mini-chart']) {
      await writeFile(join(tmp, name), archive);
      expect((await readReferenceInputs(join(tmp, name))).map((r) => r.ref)).toEqual(['ghcr.io/x/mini:1.0']);
    }
  });

  it('explains a directory that is not a chart and a missing path', async () => {
    const dir = join(tmp, 'emptydir');
    await mkdir(dir, { recursive: true });
    await expect(readReferenceInputs(dir)).rejects.toThrow(/without Chart\.yaml/);
    await expect(readReferenceInputs(join(tmp, 'nope.txt'))).rejects.toThrow(/cannot read references from .*nope\.txt/);
  });
});
