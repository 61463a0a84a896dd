/**
 * End-to-end test harness for flowgate: a client -- gw -- server sandbox of network
 * namespaces, origin servers, real clients (curl, openssl, Chromium, a raw segment writer)
 * and observation helpers (captures, queue statistics, iptables counters).
 * See test/e2e/README.md.
 */
export * from './proc.js';
export * from './topology.js';
export * from './certs.js';
export * from './servers.js';
export * from './clients.js';
export * from './browser.js';
export * from './raw.js';
export * from './capture.js';
export * from './observe.js';
export * from './fixtures.js';
