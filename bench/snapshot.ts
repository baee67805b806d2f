// A private copy of the built project for the benchmark's child processes. Other work on the same
// checkout (`npm test` runs `tsc`) rewrites dist/ at any moment; every contender run of one bench
// must execute the same code, so the CLI and the floor run from a snapshot taken at the start.
import { copyFile, mkdir, readdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface Snapshot {
  root: string;
  /** dist/src/cli/main.js inside the snapshot. */
  cli: string;
  /** dist/bench/floor.js inside the snapshot. */
  floor: string;
  /** dist/bench/clients.js inside the snapshot. */
  clients: string;
  /** dist/bench/download-path.js inside the snapshot. */
  downloadPath: string;
}

/** Copy `projectRoot`/dist (JavaScript only) and package.json to `dir`, with node_modules linked. */
export async function snapshotBuild(projectRoot: string, dir: string): Promise<Snapshot> {
  await mkdir(dir, { recursive: true });
  await copyJs(join(projectRoot, 'dist'), join(dir, 'dist'));
  // "type": "module" for the .js files; node_modules found by walking up from the snapshot.
  await copyFile(join(projectRoot, 'package.json'), join(dir, 'package.json'));
  await symlink(join(projectRoot, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return { root: dir, cli: join(dir, 'dist', 'src', 'cli', 'main.js'), floor: join(dir, 'dist', 'bench', 'floor.js'), clients: join(dir, 'dist', 'bench', 'clients.js'), downloadPath: join(dir, 'dist', 'bench', 'download-path.js') };
}

async function copyJs(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const e of await readdir(from, { withFileTypes: true })) {
    if (e.isDirectory()) await copyJs(join(from, e.name), join(to, e.name));
    else if (e.isFile() && (e.name.endsWith('.js') || e.name.endsWith('.json'))) await copyFile(join(from, e.name), join(to, e.name));
  }
}
