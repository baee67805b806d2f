// Which requests go through a proxy: Go's golang.org/x/net/http/httpproxy rules, which docker,
// skopeo and crane follow (expected values written from those rules, not from our code).
import { describe, expect, it } from 'vitest';
import { bypassesProxy, parseProxyUrl, proxyFor, proxySettingsFromEnv, redactProxy } from '../src/registry/proxy.js';

const bypass = (url: string, noProxy?: string) => bypassesProxy(new URL(url), noProxy);

describe('NO_PROXY', () => {
  it('never proxies localhost or loopback addresses, even without NO_PROXY', () => {
    expect(bypass('https://localhost:5000')).toBe(true);
    expect(bypass('https://127.0.0.1:5000')).toBe(true);
    expect(bypass('https://127.9.8.7')).toBe(true);
    expect(bypass('https://[::1]:5000')).toBe(true);
    expect(bypass('https://[::2]:5000')).toBe(false);
    expect(bypass('https://registry.ocisave.test:5000')).toBe(false);
  });

  it('a bare domain matches itself and its subdomains, not names that merely end with it', () => {
    expect(bypass('https://example.com', 'example.com')).toBe(true);
    expect(bypass('https://a.b.example.com', 'example.com')).toBe(true);
    expect(bypass('https://notexample.com', 'example.com')).toBe(false);
  });

  it('a leading dot or *. matches subdomains only', () => {
    for (const p of ['.example.com', '*.example.com']) {
      expect(bypass('https://example.com', p)).toBe(false);
      expect(bypass('https://reg.example.com:5000', p)).toBe(true);
    }
  });

  it('a port limits the entry to that port; URLs without one have 443 or 80', () => {
    expect(bypass('https://example.com', 'example.com:443')).toBe(true);
    expect(bypass('https://example.com:5000', 'example.com:443')).toBe(false);
    expect(bypass('http://example.com', 'example.com:443')).toBe(false);
    expect(bypass('https://example.com:5000', 'example.com:5000')).toBe(true);
  });

  it('IPs match exactly, CIDR ranges by prefix, and names never match IP entries', () => {
    expect(bypass('https://10.1.2.3', '10.0.0.0/8')).toBe(true);
    expect(bypass('https://11.0.0.1', '10.0.0.0/8')).toBe(false);
    expect(bypass('https://192.168.1.5:5000', '192.168.1.5')).toBe(true);
    expect(bypass('https://192.168.1.6:5000', '192.168.1.5')).toBe(false);
    expect(bypass('https://[fd00::5]:5000', 'fd00::/8')).toBe(true);
  });

  it('* alone bypasses everything; entries are trimmed and case-insensitive; empty ones are ignored', () => {
    expect(bypass('https://anything.example', '*')).toBe(true);
    expect(bypass('https://Reg.Example.COM', ' , EXAMPLE.com ,')).toBe(true);
    expect(bypass('https://other.example', ' , EXAMPLE.com ,')).toBe(false);
  });
});

describe('proxy variables', () => {
  it('https:// URLs take HTTPS_PROXY and http:// ones HTTP_PROXY; upper case wins over lower case', () => {
    const s = proxySettingsFromEnv({ HTTPS_PROXY: 'http://upper:3128', https_proxy: 'http://lower:3128', http_proxy: 'plain:8080' });
    expect(proxyFor(new URL('https://reg.example'), s)).toEqual({ url: 'http://upper:3128/', from: 'HTTPS_PROXY' });
    expect(proxyFor(new URL('http://reg.example'), s)).toEqual({ url: 'http://plain:8080/', from: 'http_proxy' });
    expect(proxyFor(new URL('https://127.0.0.1:5000'), s)).toBeUndefined();
  });

  it('a proxy without a scheme is http://; socks and garbage are refused without repeating the value', () => {
    expect(parseProxyUrl('proxy.corp:3128', 'HTTPS_PROXY')).toBe('http://proxy.corp:3128/');
    expect(() => parseProxyUrl('socks5://u:secret@p:1080', 'ALL')).toThrow('ALL: proxy scheme socks5 is not supported');
    let message = '';
    try {
      parseProxyUrl('http://u:secret@[x', 'HTTPS_PROXY');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('HTTPS_PROXY is not a valid proxy URL');
    expect(message).not.toContain('secret');
  });

  it('prints a proxy without its credentials', () => {
    expect(redactProxy('http://alice:pw@proxy.corp:3128/')).toBe('http://proxy.corp:3128');
  });
});
