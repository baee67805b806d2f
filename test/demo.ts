// `npm run demo`: the main job on a machine with no internet. Starts a real registry on loopback,
// seeds it with the fixture set (multi-arch images, shared layers, a Helm chart), saves everything
// into a registry v2 layout with ocisave, then serves that layout with a second registry and pulls
// every reference back with skopeo, comparing digests.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ocisave } from './support/cli.js';
import { skopeoInspectRaw } from './support/exec.js';
import { serveLayout, startRegistry, type RunningRegistry } from './support/registry.js';
import { seedStandardFixtures, sha256 } from './fixtures/index.js';

const out = resolve(process.argv[2] ?? 'demo');
const registries: RunningRegistry[] = [];

async function main(): Promise<void> {
  await rm(join(out, 'bundle'), { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const source = await startRegistry();
  registries.push(source);
  console.log(`source registry: ${source.url} (docker-registry, data in ${source.dataDir})`);
  const fx = await seedStandardFixtures(source.url);
  const list = join(out, 'imageList');
  await writeFile(list, `# seeded by the demo\n${fx.references.join('\n')}\n`);
  console.log(`seeded ${fx.references.length} references; image list: ${list}\n`);

  const args = ['save', '-f', list, '-o', join(out, 'bundle'), '--cache', join(out, 'cache'), '--platform', 'all'];
  console.log(`$ ocisave ${args.join(' ')}`);
  const r = await ocisave(args);
  // Progress (stderr) came first; the summary (stdout) is the result.
  process.stderr.write(r.stderr);
  process.stdout.write(r.stdout);
  if (r.code !== 0) throw new Error(`ocisave save exited ${r.code}`);

  const served = await serveLayout(join(out, 'bundle'));
  registries.push(served);
  console.log(`\nserving the bundle with a second registry at ${served.url}; pulling back with skopeo:`);
  let bad = 0;
  for (const ref of fx.references) {
    const raw = await skopeoInspectRaw(ref.replace(fx.registry, served.host));
    const digest = sha256(raw);
    const ok = digest === fx.refs[ref]!.digest;
    if (!ok) bad++;
    console.log(`  ${ok ? 'ok ' : 'BAD'} ${ref.replace(fx.registry, served.host)} ${digest.slice(0, 19)}`);
  }
  if (bad) throw new Error(`${bad} references came back with other digests`);
  console.log(`\nbundle: ${join(out, 'bundle')} — mount it as registry:2's /var/lib/registry, or run a second save to see the cache at work.`);
}

main()
  .catch((err) => {
    console.error(`demo failed: ${(err as Error).message}`);
    process.exitCode = 1;
  })
  .finally(() => Promise.all(registries.map((r) => r.stop())));
