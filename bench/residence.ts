/**
 * How long each kind of packet stays in the gateway: captures on both gateway interfaces, the
 * same packet matched on the way in and out, medians per kind (client SYN, a connection's first
 * and second client data, FIN, server SYN-ACK, ...). Sequential curl requests over HTTP and HTTPS, one every
 * ~10 ms plus curl's start, as a lightly loaded gateway sees them. Configurations: no queue, the C
 * accept loop with every TCP packet queued, flowgate with its default rules (and the bare-ACK
 * rules) as installed, and the same daemon started without bin/flowgate.js's V8 tuning.
 *
 * Run as root after `npm run build` (and `make -C bench/c-accept`):
 * `node dist/bench/residence.js [requests]` (default 100). Prints markdown tables.
 */
import { join } from 'node:path';
import {
  capture, createTopology, readTcpSegments, repoRoot, startNginx, type TcpSegment, type Topology,
} from '../test/e2e/harness/index.js';
import { applyRules, startFlowgate } from '../test/e2e/flowgate.js';

const REQUESTS = Number(process.argv[2] ?? 100);
const KINDS = ['c SYN', 'c 1st data', 'c 2nd data', 'c data', 'c FIN', 'c ACK', 's SYN-ACK', 's data', 's FIN', 's ACK'];
const SCHEMES = ['http', 'https'] as const;
type Scheme = (typeof SCHEMES)[number];

/** nth: which of its connection's client data packets this is (0 the first), -1 for others. */
function kindOf(s: TcpSegment, fromClient: boolean, nth: number): string {
  const what = s.flags & 0x02 ? (fromClient ? 'SYN' : 'SYN-ACK')
    : s.payload.length > 0 ? (nth === 0 ? '1st data' : nth === 1 ? '2nd data' : 'data') : s.flags & 0x01 ? 'FIN' : 'ACK';
  return `${fromClient ? 'c' : 's'} ${what}`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[s.length >> 1]!;
}

/** Milliseconds each kind of packet spent between the gateway's two interfaces. */
async function measure(topo: Topology, scheme: Scheme): Promise<Map<string, number[]>> {
  const inside = await capture(topo, 'gw', topo.ifaces.gwClient, 'tcp');
  const outside = await capture(topo, 'gw', topo.ifaces.gwServer, 'tcp');
  const server = topo.addrs(4).server;
  const port = scheme === 'http' ? 80 : 443;
  const loop = `for i in $(seq ${REQUESTS}); do curl -sk -o /dev/null --resolve allowed.test:${port}:${server} `
    + `${scheme}://allowed.test/; sleep 0.01; done`;
  await topo.exec('client', ['sh', '-c', loop], { timeoutMs: 600_000, check: true });
  const a = readTcpSegments(await inside.stop());
  const b = readTcpSegments(await outside.stop());
  const key = (s: TcpSegment) => `${s.src}|${s.sport}|${s.dst}|${s.dport}|${s.seq}|${s.ack}|${s.flags}|${s.payload.length}`;
  const firstSeen = (segs: TcpSegment[]) => {
    const m = new Map<string, TcpSegment>();
    for (const s of segs) if (!m.has(key(s))) m.set(key(s), s);
    return m;
  };
  const atA = firstSeen(a);
  const atB = firstSeen(b);
  const out = new Map<string, number[]>();
  const add = (k: string, ms: number) => (out.get(k) ?? out.set(k, []).get(k)!).push(ms);
  const dataSeen = new Map<string, number>(); // client data packets seen per connection
  for (const [k, seg] of atA) {
    const fromClient = seg.dst === server;
    const conn = fromClient ? `${seg.sport}` : `${seg.dport}`;
    let nth = -1;
    if (fromClient && seg.payload.length > 0) {
      nth = dataSeen.get(conn) ?? 0;
      dataSeen.set(conn, nth + 1);
    }
    const other = atB.get(k);
    if (other === undefined) continue;
    const ms = (fromClient ? other.time - seg.time : seg.time - other.time) * 1000;
    if (ms >= 0) add(kindOf(seg, fromClient, nth), ms);
  }
  return out;
}

async function main(): Promise<void> {
  const topo = await createTopology({});
  const rows = new Map<Scheme, string[]>(SCHEMES.map((s) => [s, []]));
  const measureBoth = async (name: string) => {
    for (const scheme of SCHEMES) {
      const m = await measure(topo, scheme);
      rows.get(scheme)!.push(`| ${name} | ${KINDS.map((k) => (m.get(k)?.length ? median(m.get(k)!).toFixed(3) : '-')).join(' | ')} |`);
    }
  };
  try {
    await startNginx(topo);
    await measureBoth('no queue');
    await topo.exec('gw', ['iptables', '-A', 'FORWARD', '-p', 'tcp', '-j', 'NFQUEUE', '--queue-num', '0'], { check: true });
    const c = topo.spawn('gw', [join(repoRoot(), 'bench', 'c-accept', 'accept'), '0']);
    await new Promise((r) => setTimeout(r, 500));
    await measureBoth('C loop, every packet queued');
    await c.kill('SIGTERM', 3000);
    await topo.exec('gw', ['iptables', '-F', 'FORWARD'], { check: true });
    await applyRules(topo);
    let fg = await startFlowgate(topo, 'default: allow\n');
    await measureBoth('flowgate, default rules');
    await measureBoth('flowgate, default rules, again');
    await fg.stop();
    // The same daemon without bin/flowgate.js (which lowers V8's tier-up budget for `run`).
    const entry = (...args: string[]) => [process.execPath, join(repoRoot(), 'dist', 'src', 'cli', 'entry.js'), ...args];
    fg = await startFlowgate(topo, 'default: allow\n', 'flowgate-v8-defaults', entry);
    await measureBoth('flowgate, default rules, V8 default tier-up budget');
    await fg.stop();
  } finally {
    await topo.destroy();
  }
  const out = [`Gateway residence, median ms per packet kind, ${REQUESTS} sequential curl requests, ${new Date().toISOString()}`];
  for (const scheme of SCHEMES) {
    out.push('', `${scheme.toUpperCase()}:`, '', `| configuration | ${KINDS.join(' | ')} |`,
      `| --- |${KINDS.map(() => ' ---: |').join('')}`, ...rows.get(scheme)!);
  }
  process.stdout.write(out.join('\n') + '\n');
}

await main();
