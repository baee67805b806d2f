// Preloaded into CLI children by the hostile-registry tests (NODE_OPTIONS=--import …/net-guard.js):
//  - every `.invalid` host name resolves to 127.0.0.1 without asking any DNS server, so a test that
//    names a non-loopback host (realm.invalid) never sends a packet off this machine, and a
//    connection that should never happen lands on the test's own server, where it is counted;
//  - at exit, the process's peak RSS (VmHWM from /proc/self/status) is written to
//    $OCISAVE_TEST_HWM_FILE, the child's own report to go with the parent's polling.
import dns from 'node:dns';
import { readFileSync, writeFileSync } from 'node:fs';

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;
const original = dns.lookup;

function guardedLookup(hostname: string, options: unknown, callback?: LookupCallback): void {
  const cb = (typeof options === 'function' ? options : callback) as LookupCallback;
  const opts = (typeof options === 'object' && options) || {};
  if (/\.invalid\.?$/i.test(hostname)) {
    process.nextTick(() => ((opts as { all?: boolean }).all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)));
    return;
  }
  (original as (h: string, o: unknown, c: LookupCallback) => void)(hostname, opts, cb);
}
(dns as { lookup: unknown }).lookup = guardedLookup;

const hwmFile = process.env.OCISAVE_TEST_HWM_FILE;
if (hwmFile) {
  process.on('exit', () => {
    try {
      const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
      if (kb) writeFileSync(hwmFile, kb);
    } catch {
      // the parent's polling still has a figure
    }
  });
}
