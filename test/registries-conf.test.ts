// containers-registries.conf(5) v2 parsing and matching (expected values from the man page's rules).
import { describe, expect, it } from 'vitest';
import { findRegistry, insecureHosts, parseRegistriesConf, rewrite } from '../src/registry/registries-conf.js';
import { Mirrors } from '../src/registry/mirror.js';
import type { RegistryClient } from '../src/registry/client.js';

const CONF = `
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "example.com/foo"
location = "internal.example:5000/mirrored/foo"
insecure = true

[[registry.mirror]]
location = "mirror.example/cache"
pull-from-mirror = "digest-only"

[[registry.mirror]]
location = "second.example"
insecure = true

[[registry]]
location = "example.com"
mirror-by-digest-only = true

[[registry.mirror]]
location = "hub-mirror.example"

[[registry]]
prefix = "*.blocked.example"
blocked = true
`;

describe('registries.conf', () => {
  const conf = parseRegistriesConf(CONF, '/x/registries.conf');

  it('reads prefix, location, insecure, blocked and mirrors with their pull-from-mirror', () => {
    expect(conf.registries).toHaveLength(3);
    expect(conf.registries[0]).toEqual({
      prefix: 'example.com/foo',
      location: 'internal.example:5000/mirrored/foo',
      insecure: true,
      blocked: false,
      mirrors: [
        { location: 'mirror.example/cache', insecure: false, pullFromMirror: 'digest-only' },
        { location: 'second.example', insecure: true, pullFromMirror: 'all' },
      ],
    });
    // mirror-by-digest-only (deprecated) is the default of its mirrors' pull-from-mirror.
    expect(conf.registries[1]!.mirrors[0]!.pullFromMirror).toBe('digest-only');
    expect(conf.registries[1]!.prefix).toBe('example.com');
  });

  it('picks the longest matching prefix, at path boundaries; *.domain matches hosts', () => {
    expect(findRegistry(conf, 'example.com/foo/bar')?.prefix).toBe('example.com/foo');
    expect(findRegistry(conf, 'example.com/foo')?.prefix).toBe('example.com/foo');
    expect(findRegistry(conf, 'example.com/foobar')?.prefix).toBe('example.com');
    expect(findRegistry(conf, 'a.blocked.example/x')?.blocked).toBe(true);
    expect(findRegistry(conf, 'blocked.example/x')).toBeUndefined();
    expect(findRegistry(conf, 'quay.io/x')).toBeUndefined();
  });

  it('rewrites a name from the prefix to a location', () => {
    const e = findRegistry(conf, 'example.com/foo/bar')!;
    expect(rewrite(e, 'example.com/foo/bar', e.location)).toBe('internal.example:5000/mirrored/foo/bar');
    expect(rewrite(e, 'example.com/foo/bar', e.mirrors[0]!.location)).toBe('mirror.example/cache/bar');
  });

  it('lists insecure hosts: the hosts connected to (location, insecure mirrors), not a relocated prefix', () => {
    expect(insecureHosts(conf)).toEqual({ 'internal.example:5000': { tlsVerify: false }, 'second.example': { tlsVerify: false } });
  });

  it('gives mirror endpoints by pull-from-mirror, the origin last, and refuses blocked names', () => {
    const m = new Mirrors({} as RegistryClient, { registriesConf: conf });
    const hosts = (ref?: string) => m.endpoints('example.com', 'foo/bar', ref).map((e) => `${e.registry}/${e.repository}${e.mirror ? ' (mirror)' : ''}`);
    expect(hosts('1.0')).toEqual(['second.example/bar (mirror)', 'internal.example:5000/mirrored/foo/bar']);
    expect(hosts('sha256:' + 'a'.repeat(64))).toEqual(['mirror.example/cache/bar (mirror)', 'second.example/bar (mirror)', 'internal.example:5000/mirrored/foo/bar']);
    expect(hosts()).toEqual(['mirror.example/cache/bar (mirror)', 'second.example/bar (mirror)', 'internal.example:5000/mirrored/foo/bar']);
    expect(() => m.endpoints('a.blocked.example', 'x')).toThrow('a.blocked.example/x: blocked by /x/registries.conf (prefix *.blocked.example)');
    const hub = new Mirrors({} as RegistryClient, { hubMirrors: ['flag-mirror:5000'], registriesConf: conf });
    expect(hub.endpoints('docker.io', 'library/alpine', '3.19').map((e) => e.registry)).toEqual(['flag-mirror:5000', 'docker.io']);
  });

  it('reads the insecure and block lists of a version 1 file', () => {
    const v1 = parseRegistriesConf('[registries.search]\nregistries = ["docker.io"]\n[registries.insecure]\nregistries = ["old:5000"]\n[registries.block]\nregistries = ["bad.example"]\n', 'v1');
    expect(findRegistry(v1, 'old:5000/x')?.insecure).toBe(true);
    expect(findRegistry(v1, 'bad.example/x')?.blocked).toBe(true);
  });

  it('names the file and the field for bad input', () => {
    expect(() => parseRegistriesConf('[[registry]\n', 'f.conf')).toThrow(/^registries\.conf f\.conf: not valid TOML/);
    expect(() => parseRegistriesConf('[[registry]]\nprefix = "*.x.example"\nlocation = "y"\n', 'f')).toThrow('registries.conf f: registry[0]: a wildcard prefix (*.x.example) cannot have a location');
    expect(() => parseRegistriesConf('[[registry]]\nlocation = "https://x"\n', 'f')).toThrow('registry[0].location "https://x" must be host[:port][/path], without a scheme');
    expect(() => parseRegistriesConf('[[registry]]\nlocation = "x"\n[[registry.mirror]]\nlocation = "m"\npull-from-mirror = "sometimes"\n', 'f')).toThrow('registry[0].mirror[0].pull-from-mirror must be "all", "digest-only" or "tag-only"');
    expect(() => parseRegistriesConf('[[registry]]\ninsecure = true\n', 'f')).toThrow('registry[0] has neither prefix nor location');
  });
});
