// The adaptive connection controller (src/engine/adaptive.ts), fed measured periods by hand: what it
// decides when throughput grows, stops growing, or the host answers 429/503/resets; the range size
// it picks from the measured per-connection rate; and the resizable semaphore it drives.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Cache } from '../src/cache/cache.js';
import { ConnectionController, type HostSample } from '../src/engine/adaptive.js';
import { coversExactly } from '../src/engine/scheduler.js';
import { AdjustableSemaphore } from '../src/util/limit.js';

const MB = 1e6;
const MiB = 1024 * 1024;

/** A host whose connections each carry `perConnection` bytes/s, `linkCap` in all, with plenty queued. */
function link(perConnection: number, linkCap = Infinity) {
  return (limit: number, extra: Partial<HostSample> = {}): HostSample => ({
    bytes: Math.min(limit * perConnection, linkCap) / 2, // a 500 ms period
    ms: 500,
    busy: limit,
    waiting: 50,
    throttled: 0,
    ...extra,
  });
}

/** Feeds `periods` periods from `host` and returns the limit after each. */
function run(c: ConnectionController, host: (limit: number) => HostSample, periods: number): number[] {
  const limits: number[] = [];
  for (let i = 0; i < periods; i++) limits.push(c.sample(host(c.limit)));
  return limits;
}

describe('connection controller', () => {
  it('starts at 8 and doubles while every level moves more, up to the ceiling', () => {
    const c = new ConnectionController(64);
    expect(c.limit).toBe(8);
    // Two settling periods at the start, one after each change, then two measured ones per level.
    const limits = run(c, link(2 * MB), 16);
    expect(limits).toEqual([8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64, 64]);
  });

  it('stops at a ceiling that is not a power of two, and starts under a low one', () => {
    const c = new ConnectionController(12);
    expect(run(c, link(2 * MB), 12).at(-1)).toBe(12);
    expect(new ConnectionController(3).limit).toBe(3);
  });

  it('goes back to the last level that gained when the link is full', () => {
    // 40 MB/s in all: 8 → 16 MB/s, 16 → 32, 32 → 40 (+25 %), 64 → 40 (no gain): back to 32.
    const c = new ConnectionController(128);
    const limits = run(c, link(2 * MB, 40 * MB), 14);
    expect(limits.slice(0, 13)).toEqual([8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64, 32]);
    expect(limits.slice(13)).toEqual([32]);
  });

  it('stays at 8 where more connections move no more (a host or a CPU already at its limit)', () => {
    const c = new ConnectionController(32);
    // 8 connections already move the 16 MB/s there is: 16 is tried, gains nothing, and is left.
    const limits = run(c, link(2 * MB, 16 * MB), 12);
    expect(limits).toEqual([8, 8, 8, 16, 16, 16, 8, 8, 8, 8, 8, 8]);
  });

  it('takes no period in which nothing moved as a measurement', () => {
    const c = new ConnectionController(32);
    const idle = (l: number) => link(2 * MB)(l, { bytes: 0 });
    expect(run(c, idle, 10)).toEqual(Array(10).fill(8));
    expect(c.connectionRate).toBeUndefined();
    expect(run(c, link(2 * MB), 4)).toEqual([8, 8, 8, 16]);
  });

  it('does not grow while connections are idle or nothing waits', () => {
    const c = new ConnectionController(32);
    const host = link(2 * MB);
    expect(run(c, (l) => host(l, { waiting: 0 }), 10)).toEqual(Array(10).fill(8));
    expect(run(c, (l) => host(l, { busy: 1 }), 10)).toEqual(Array(10).fill(8));
  });

  it('halves on each period with a 429, 503 or reset, down to one connection', () => {
    const c = new ConnectionController(32);
    run(c, link(2 * MB), 12);
    expect(c.limit).toBe(32);
    const storm = (l: number) => link(2 * MB)(l, { throttled: 3 });
    expect(run(c, storm, 7)).toEqual([16, 8, 4, 2, 1, 1, 1]);
    // A storm from the first period: 8 → 4 → 2 → 1.
    const fresh = new ConnectionController(32);
    expect(run(fresh, storm, 4)).toEqual([4, 2, 1, 1]);
  });

  it('after a back-off, holds the level and probes upwards only after a quiet while', () => {
    const c = new ConnectionController(32);
    run(c, link(2 * MB), 12);
    c.sample(link(2 * MB)(32, { throttled: 1 }));
    expect(c.limit).toBe(16);
    const quiet = run(c, link(2 * MB), 40);
    // Held for at least 20 periods (PROBE_PERIODS), then tried at 20 (16 × 1.25) …
    expect(quiet.slice(0, 20)).toEqual(Array(20).fill(16));
    expect(quiet).toContain(20);
    // … which gained, so it grew on.
    expect(quiet.at(-1)).toBe(32);
  });

  it('sizes ranges at 3 s of one connection, 32 MiB until measured, within 8–256 MiB', () => {
    const unmeasured = new ConnectionController(32);
    expect(unmeasured.segmentBytes()).toBe(32 * MiB);

    const at = (perConnection: number) => {
      const c = new ConnectionController(32);
      run(c, link(perConnection), 3);
      return c.segmentBytes();
    };
    expect(at(2 * MB)).toBe(8 * MiB); // 6 MB is under the 8 MiB floor
    expect(at(8 * MB)).toBe(24 * MB);
    expect(at(20 * MB)).toBe(60 * MB);
    expect(at(1000 * MB)).toBe(256 * MiB);
  });

  it('rejects a ceiling that is not a positive integer', () => {
    expect(() => new ConnectionController(0)).toThrow(/positive integer/);
    expect(() => new ConnectionController(1.5)).toThrow(/positive integer/);
  });
});

describe('adjustable semaphore', () => {
  it('hands out up to the limit, wakes waiters when grown, and none past a lowered limit', async () => {
    const s = new AdjustableSemaphore(2);
    const held = [await s.acquire(), await s.acquire()];
    const woken: number[] = [];
    const waiters = [1, 2, 3].map((n) => s.acquire(n).then((release) => (woken.push(n), release)));
    await Promise.resolve();
    expect(s.busy).toBe(2);
    expect(s.queued).toBe(3);

    s.setLimit(3); // one more slot: the highest priority waiter goes
    const third = await waiters[2]!;
    expect(woken).toEqual([3]);

    s.setLimit(1); // three held, limit one: releases hand nothing out until under one
    held[0]!();
    held[1]!();
    await Promise.resolve();
    expect(woken).toEqual([3]);
    expect(s.busy).toBe(1);
    third();
    await waiters[1];
    expect(woken).toEqual([3, 2]);
    expect(s.queued).toBe(1);
  });
});

describe('resuming a split blob', () => {
  const digest = `sha256:${'ab'.repeat(32)}`;

  it('finds the ranges an earlier run checkpointed, in order, and only those of that blob', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ocisave-adaptive-cache-'));
    const cache = Cache.open(dir);
    try {
      const MiB8 = 8 * MiB;
      // Saved out of order, as parallel segments checkpoint.
      for (const [start, end] of [[2 * MiB8, 20_000_000 + 2 * MiB8], [0, MiB8], [MiB8, 2 * MiB8]] as const) await cache.saveSegment(digest, start, end, { offset: start + 5, updatedAt: 1 });
      await cache.saveSegment(`sha256:${'cd'.repeat(32)}`, 0, 99, { offset: 0, updatedAt: 1 });
      expect(cache.segmentRanges(digest)).toEqual([[0, MiB8], [MiB8, 2 * MiB8], [2 * MiB8, 20_000_000 + 2 * MiB8]]);
      expect(cache.segmentRanges(`sha256:${'ef'.repeat(32)}`)).toEqual([]);
    } finally {
      await cache.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reuses earlier ranges only when they tile the whole blob', () => {
    expect(coversExactly([[0, 10], [10, 25]], 25)).toBe(true);
    expect(coversExactly([[0, 10], [10, 25]], 30)).toBe(false); // the end is missing
    expect(coversExactly([[0, 10], [12, 25]], 25)).toBe(false); // a gap (a range never started)
    expect(coversExactly([[0, 10], [5, 25]], 25)).toBe(false); // an overlap
    expect(coversExactly([[0, 25]], 25)).toBe(false); // one range is no split
    expect(coversExactly([], 25)).toBe(false);
    expect(coversExactly(Array.from({ length: 1025 }, (_, i) => [i, i + 1] as [number, number]), 1025)).toBe(false); // over MAX_SEGMENTS
  });
});
