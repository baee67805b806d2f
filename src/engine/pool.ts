// The piscina pool that runs workers/download: a thread per core but one, each running many
// downloads at once (they wait on the network far more than they compute).
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Piscina } from 'piscina';
import { WORKER_LOADED, type DownloadResult, type DownloadTask, type SegmentTask } from './task.js';

/** The worker module's exports: the whole-blob download, one range of a segmented one, the final check. */
export type WorkerTaskName = 'default' | 'segment' | 'verify';

/** The compiled worker: next to this module in dist/, or in dist/ when running from sources (tests). */
function workerFile(): string {
  const candidates = ['../../workers/download.js', '../../dist/workers/download.js'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`download worker not built (looked for ${candidates.join(', ')}): run npm run build`);
  return found;
}

/**
 * The pool starts its threads on the first task, not before: a warm save (every blob cached) runs
 * none, and starting threads that each load undici and the hasher cost it ~0.3 s of its ~1 s.
 */
export class DownloadPool {
  private started?: Promise<{ piscina: Piscina; loaded: Promise<void> }>;

  constructor(private readonly jobs: number) {}

  /** Starts the threads (once); run() calls it. */
  async start(): Promise<Piscina> {
    this.started ??= startPool(this.jobs);
    return (await this.started).piscina;
  }

  get isStarted(): boolean {
    return this.started !== undefined;
  }

  async run(task: DownloadTask | SegmentTask, name: WorkerTaskName = 'default'): Promise<DownloadResult> {
    return (await this.start()).run(task, { name });
  }

  async close(): Promise<void> {
    if (!this.started) return;
    const { piscina, loaded } = await this.started;
    // Terminating a thread while it loads a native addon aborts the whole process (node's napi
    // raises a fatal error), which a save that needs few downloads could otherwise race into.
    // Piscina unrefs idle threads, so a timer keeps the process alive while it waits for them.
    const keepAlive = setInterval(() => {}, 1_000);
    try {
      await loaded;
    } finally {
      clearInterval(keepAlive);
    }
    await piscina.destroy();
  }
}

async function startPool(jobs: number): Promise<{ piscina: Piscina; loaded: Promise<void> }> {
  // Imported here, not at the top: a warm save never starts the pool, and loading piscina costs
  // ~15 ms of CPU once the save's other modules are in (process.cpuUsage, 9-18 ms in 5 runs).
  const { Piscina } = await import('piscina');
  // One core stays with the main thread (resolve, linking) and, on a small machine, whatever
  // else runs there; a worker thread streams several downloads at once anyway.
  const threads = Math.max(1, Math.min(availableParallelism() - 1, jobs));
  const piscina = new Piscina({
    filename: workerFile(),
    minThreads: threads,
    maxThreads: threads,
    concurrentTasksPerWorker: Math.ceil(jobs / threads),
    // piscina's default ('sync') parks an idle worker in Atomics.wait, which freezes its event
    // loop, and with it the other downloads that worker is streaming. 'async' waits without blocking.
    atomics: 'async',
    idleTimeout: 5_000,
  });
  const loaded = new Promise<void>((resolve) => {
    let count = 0;
    piscina.on('message', (m) => {
      if (m === WORKER_LOADED && ++count >= threads) resolve();
    });
    piscina.once('error', () => resolve());
  });
  return { piscina, loaded };
}
