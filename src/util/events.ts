// The engine reports what it does as a stream of events; the CLI renders them (bars, lines, JSON).

export type EngineEvent =
  | { type: 'resolved'; input: string; digest: string; platforms: string[] }
  /** `code`: see src/util/errors.ts (README, "Errors"). */
  | { type: 'resolve-failed'; input: string; error: string; code: string }
  | { type: 'plan'; blobs: number; bytes: number; cached: number; cachedBytes: number; queued: number; queuedBytes: number }
  | { type: 'blob-queued'; digest: string; size: number; resumeFrom: number }
  | { type: 'blob-start'; digest: string; size: number }
  | { type: 'progress'; done: number; total: number; active: number }
  | { type: 'blob-done'; digest: string; size: number; fetched: number }
  | { type: 'blob-retry'; digest: string; reason: string; attempt: number }
  | { type: 'blob-failed'; digest: string; error: string; code: string }
  | { type: 'link'; format: string; path: string }
  | { type: 'connections'; host: string; limit: number; reason: string }
  | { type: 'warning'; message: string };

export type EventListener = (e: EngineEvent) => void;

export class EngineEvents {
  private readonly listeners: EventListener[] = [];
  on(fn: EventListener): this {
    this.listeners.push(fn);
    return this;
  }
  emit(e: EngineEvent): void {
    for (const fn of this.listeners) fn(e);
  }
}
