/**
 * Files the demo writes into its temporary directory: a throwaway self-signed certificate for
 * the demo names, the example policy (a config and a decision module) and nothing else.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The names the origin answers for; clients map them to the server's address. */
export const DEMO_HOSTS = ['allowed.test', 'blocked.test', 'slow.test'] as const;

/** How long the example decision module thinks about slow.test, in ms. */
export const SLOW_POLICY_MS = 500;

/** Paths of the generated files. */
export interface DemoFiles {
  cert: string;
  key: string;
  config: string;
  policy: string;
  socket: string;
}

/**
 * argv of `openssl req -x509` making a self-signed P-256 certificate for DEMO_HOSTS, valid one
 * day; clients trust it directly (`curl --cacert`).
 */
export function certArgv(cert: string, key: string): string[] {
  return ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=flowgate demo (throwaway)',
    '-addext', `subjectAltName=${DEMO_HOSTS.map((h) => `DNS:${h}`).join(',')}`];
}

/** The decision module: slow.test is allowed after SLOW_POLICY_MS, anything else at once. */
export const POLICY_MODULE = `// flowgate demo: a decision module, asked about every flow or request no rule matched.
export async function decide(info) {
  const name = info.sni ?? info.host ?? '';
  if (name === 'slow.test') {
    await new Promise((resolve) => setTimeout(resolve, ${SLOW_POLICY_MS}));
    return { verdict: 'allow', reason: 'looked it up' };
  }
  return { verdict: 'allow', reason: 'ok' };
}
`;

/** The example config (CONTRACT.md "Config"). */
export function configYaml(policy: string, socket: string): string {
  return `# flowgate demo policy
queue: 0
default: allow
decision_timeout_ms: 2000
on_timeout: allow
block_action: reset
rules:
  - name: no-blocked
    action: block
    domains: [blocked.test]
  - name: allowed
    action: allow
    domains: [allowed.test]
decide:
  module: ${policy}
on_error: allow
control: ${socket}
`;
}

/** Writes config and policy module into `dir`; the certificate paths are filled by openssl. */
export function writeDemoFiles(dir: string): DemoFiles {
  const files: DemoFiles = {
    cert: join(dir, 'origin.crt'),
    key: join(dir, 'origin.key'),
    config: join(dir, 'demo.yaml'),
    policy: join(dir, 'demo-policy.mjs'),
    socket: join(dir, 'control.sock'),
  };
  writeFileSync(files.policy, POLICY_MODULE);
  writeFileSync(files.config, configYaml(files.policy, files.socket));
  return files;
}
