/**
 * How long each kind of packet stays in the gateway: captures on both gateway interfaces, the
 * same packet matched on the way in and out, medians per kind (client SYN, client data, FIN,
 * server SYN-ACK, ...). Sequential curl requests over HTTP, one every ~10 ms plus curl's start,
 * as a lightly loaded gateway sees them. Configurations: no queue, the C accept loop with every
 * TCP packet queued, flowgate with its default rules (and the bare-ACK rules).
 *
 * Run as root after `npm run build` (and `make -C bench/c-accept`):
 * `node dist/bench/residence.js [requests]` (default 100). Prints a markdown table.
 */
import { join } from 'node:path';
import {
  capture, createTopology, readTcpSegments, repoRoot, startNginx, type TcpSegment, type Topology,
} from '../test/e2e/harness/index.js';
import { applyRules, startFlowgate } from '../test/e2e/flowgate.js';

const REQUESTS = Number(process.argv[2] ?? 100);
const KINDS = ['c SYN', 'c data', 'c FIN', 'c ACK', 's SYN-ACK', 's data', 's FIN', 's ACK'];

function kindOf(s: TcpSegment, fromClient: boolean): string {
  const what = s.flags & 0x02 ? (fromClient ? 'SYN' : 'SYN-ACK') : s.payload.length > 0 ? 'data' : s.flags & 0x01 ? 'FIN' : 'ACK';
  return `${fromClient ? 'c' : 's'} ${what}`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[s.length >> 1]!;
}

/** Median milliseconds each kind of packet spent between the gateway's two interfaces. */
async function measure(topo: Topology): Promise<Map<string, number[]>> {
  const inside = await capture(topo, 'gw', topo.ifaces.gwClient, 'tcp');
  const outside = await capture(topo, 'gw', topo.ifaces.gwServer, 'tcp');
  const server = topo.addrs(4).server;
  const loop = `for i in $(seq ${REQUESTS}); do curl -s -o /dev/null --resolve allowed.test:80:${server} `
    + 'http://allowed.test/; sleep 0.01; done';
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
  for (const [k, seg] of atA) {
    const fromClient = seg.dst === server;
    const other = atB.get(k);
    if (other === undefined) continue;
    const ms = (fromClient ? other.time - seg.time : seg.time - other.time) * 1000;
    if (ms >= 0) add(kindOf(seg, fromClient), ms);
  }
  return out;
}

async function main(): Promise<void> {
  const topo = await createTopology({});
  const rows: string[] = [];
  const row = (name: string, m: Map<string, number[]>) =>
    rows.push(`| ${name} | ${KINDS.map((k) => (m.get(k)?.length ? median(m.get(k)!).toFixed(3) : '-')).join(' | ')} |`);
  try {
    await startNginx(topo);
    row('no queue', await measure(topo));
    await topo.exec('gw', ['iptables', '-A', 'FORWARD', '-p', 'tcp', '-j', 'NFQUEUE', '--queue-num', '0'], { check: true });
    const c = topo.spawn('gw', [join(repoRoot(), 'bench', 'c-accept', 'accept'), '0']);
    await new Promise((r) => setTimeout(r, 500));
    row('C loop, every packet queued', await measure(topo));
    await c.kill('SIGTERM', 3000);
    await topo.exec('gw', ['iptables', '-F', 'FORWARD'], { check: true });
    await applyRules(topo);
    const fg = await startFlowgate(topo, 'default: allow\n');
    row('flowgate, default rules', await measure(topo));
    row('flowgate, default rules, again', await measure(topo));
    await fg.stop();
  } finally {
    await topo.destroy();
  }
  process.stdout.write([
    `Gateway residence, median ms per packet kind, ${REQUESTS} sequential curl requests (HTTP), ${new Date().toISOString()}`,
    '', `| configuration | ${KINDS.join(' | ')} |`, `| --- |${KINDS.map(() => ' ---: |').join('')}`, ...rows, ''].join('\n'));
}

await main();
