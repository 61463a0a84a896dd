/**
 * A throwaway certificate authority and one server certificate for the test names, made with
 * the openssl command line into a temporary directory once per process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execArgv, requireBinary } from './proc.js';

/** Names the test servers answer for; all are in the server certificate. */
export const TEST_HOSTS = ['allowed.test', 'blocked.test'] as const;

/** Paths of the generated PEM files. */
export interface TestCerts {
  /** Directory holding them (removed at process exit). */
  dir: string;
  /** CA certificate: pass to clients as cacert/CAfile. */
  caCert: string;
  /** Server certificate (SANs: allowed.test, *.allowed.test, blocked.test, *.blocked.test). */
  cert: string;
  /** Server private key (P-256). */
  key: string;
}

let pending: Promise<TestCerts> | undefined;

/** Creates the CA and server certificate on first call; later calls return the same files. */
export function ensureCerts(): Promise<TestCerts> {
  if (pending === undefined) {
    pending = makeCerts();
    pending.catch(() => {
      pending = undefined;
    });
  }
  return pending;
}

async function makeCerts(): Promise<TestCerts> {
  const openssl = requireBinary('openssl');
  const dir = mkdtempSync(join(tmpdir(), 'fg-e2e-certs-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const p = (name: string) => join(dir, name);
  const run = (args: string[]) => execArgv([openssl, ...args], { check: true, timeoutMs: 20_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run([
    'req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '7',
    '-subj', '/CN=flowgate e2e throwaway CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await run(['req', '-new', ...ec, '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=allowed.test']);
  const sans = TEST_HOSTS.flatMap((h) => [`DNS:${h}`, `DNS:*.${h}`]).join(',');
  writeFileSync(
    p('server.ext'),
    `subjectAltName=${sans}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`,
  );
  await run([
    'x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial',
    '-out', p('server.crt'), '-days', '7', '-extfile', p('server.ext'),
  ]);
  return { dir, caCert: p('ca.crt'), cert: p('server.crt'), key: p('server.key') };
}
