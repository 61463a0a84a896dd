// Interleaved new HTTPS connections/s (wrk) per configuration, each configuration taking its turn
// in every round, with the filter's CPU time per connection by thread. Root; builds its own
// namespaces (the e2e harness). Run from the repository root after `npm run build`.
// usage: node bench/scripts/conc.mjs ROUNDS SECONDS mode...
// modes: none (no rules), conntrack (one conntrack rule: connection tracking alone), rules-only (flowgate's rules, accepting what they would queue or copy),
//   c-rules (bench/c-accept behind flowgate's rules: the C decider),
//   c-nolog (the same without the NFLOG handshake copies), fg (flowgate, default rules),
//   fg:<yaml> (extra config lines, \n for newlines; `fg:marks: {answer: 0}` is flowgate without
//   the answer chain), tree:<dir> (another checkout's build: its rules and daemon), fg-<name> (a
//   binding build copied from /tmp/fg-<name>.node).
// env: RPF=1 applies the rules with --rpfilter (and so the answer chain) for every mode;
//   SPLIT=1 pins wrk/nginx to CPU 0 and the filter to CPU 1; STATUS=1 prints the daemon's
//   status after each run; TTFB=http|https measures paired added time to first byte instead;
//   PERF=1 records `perf record -g` of the filter to /tmp/perf-<mode>.data.
import { readdirSync, readFileSync } from 'node:fs';
import { createTopology, startNginx } from '../../dist/test/e2e/harness/index.js';
import { applyRules } from '../../dist/test/e2e/flowgate.js';
import { DEFAULT_MARKS } from '../../dist/src/verdict/sink.js';
import { clearRules, startCLoop, startFlowgateDaemon } from '../../dist/bench/lib/filters.js';
import { installHosts } from '../../dist/bench/lib/hosts.js';
import { pinProcess, cpuTimes, busyPercent } from '../../dist/bench/lib/procfs.js';
import { ttfb, connRate, HOST, REFERENCE_PORTS, REFERENCE_RULE, tuneClient } from '../../dist/bench/lib/measure.js';

const [rounds, seconds, ...modes] = process.argv.slice(2);
const RULES = process.env.RPF === '1' ? ['--rpfilter'] : [];
const TCK = 100;
function threads(pid) {
  const out = {};
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const s = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const close = s.lastIndexOf(')');
      const name = s.slice(s.indexOf('(') + 1, close);
      const f = s.slice(close + 2).split(' ');
      const key = `${name}`;
      const o = out[key] ?? (out[key] = { u: 0, s: 0 });
      o.u += Number(f[11]) / TCK; o.s += Number(f[12]) / TCK;
    }
  } catch {}
  return out;
}
const topo = await createTopology();
// flowgate's rules, the handshake chain accepting without the NFLOG copy.
async function applyRulesWithoutCopies() {
  await applyRules(topo, RULES);
  for (const ipt of ['iptables', 'ip6tables']) {
    await topo.exec('gw', [ipt, '-w', '-F', 'FLOWGATE_SYN'], { check: true });
    await topo.exec('gw', [ipt, '-w', '-A', 'FLOWGATE_SYN', '-j', 'ACCEPT'], { check: true });
  }
}
try {
  installHosts(topo, [HOST, 'blocked.test']);
  const nginx = await startNginx(topo, { alsoPorts: REFERENCE_PORTS });
  await tuneClient(topo);
  const yamlBase = 'default: allow\nrules:\n  - name: no-blocked\n    action: block\n    domains: [blocked.test]\n';
  for (let r = 0; r < Number(rounds); r++) {
    for (const mode of modes) {
      let f;
      if (mode === 'conntrack') {
        // conntrack alone (flowgate's connmarks need it): one rule that makes the namespace track connections.
        for (const ipt of ['iptables', 'ip6tables']) await topo.exec('gw', [ipt, '-w', '-I', 'FORWARD', '1', '-p', 'tcp', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'], { check: true });
      } else if (mode === 'rules-only') {
        // flowgate's rules with nothing behind them: no handshake copies, and what they would queue accepted.
        await applyRulesWithoutCopies();
        for (const ipt of ['iptables', 'ip6tables']) {
          const x = (a) => topo.exec('gw', [ipt, '-w', ...a], { check: true });
          const at = (await x(['-S', 'FLOWGATE'])).stdout.split('\n').filter((l) => l.startsWith('-A ')).findIndex((l) => l.includes('NFQUEUE'));
          await x(['-I', 'FLOWGATE', String(at + 1), '-p', 'tcp', '-j', 'ACCEPT']);
        }
      } else if (mode === 'c-nolog') { await applyRulesWithoutCopies(); f = await startCLoop(topo, ['--data-mark', String(DEFAULT_MARKS.allow)]); }
      else if (mode === 'c-rules') { await applyRules(topo, RULES); f = await startCLoop(topo, ['--data-mark', String(DEFAULT_MARKS.allow), '--log-group', '0']); }
      else if (mode.startsWith('tree:')) {
        const tree = mode.slice(5);
        await clearRules(topo);
        await topo.exec('gw', [process.execPath, `${tree}/bin/flowgate.js`, 'rules', 'apply', ...RULES], { check: true });
        const cfg = `${topo.tmpDir}/t${r}.yaml`;
        (await import('node:fs')).writeFileSync(cfg, yamlBase);
        const proc = topo.spawn('gw', [process.execPath, '--interrupt-budget=4096', `${tree}/dist/src/cli/entry.js`, 'run', '--config', cfg]);
        await proc.waitForLine(/bound queue/, { timeoutMs: 20000, stream: 'stderr' });
        f = { pid: proc.pid, stop: () => proc.kill('SIGTERM', 10000) };
      }
      else if (mode.startsWith('fg')) {
        const bin = /^fg-(\w+)/.exec(mode)?.[1];
        if (bin) (await import('node:fs')).copyFileSync(`/tmp/fg-${bin}.node`, 'native/build/Release/flowgate_nfqueue.node');
        await applyRules(topo, RULES);
        const extra = mode.includes(':') ? mode.slice(mode.indexOf(':') + 1).replace(/\\n/g, '\n') + '\n' : '';
        f = await startFlowgateDaemon(topo, yamlBase + extra, { name: `fg${r}` , nodeFlags: process.env.NODEFLAGS ? process.env.NODEFLAGS.split(' ') : undefined});
      }
      const split = process.env.SPLIT === '1'; const cpus = split ? '0' : undefined;
      if (split) { pinProcess(nginx.process.pid, '0', true); if (f) pinProcess(f.pid, '1'); }
      await connRate(topo, 'https', 1, cpus);
      if (process.env.TTFB) {
        await topo.exec('gw', ['iptables', '-w', '-I', 'FORWARD', '1', ...REFERENCE_RULE], { check: true });
        const tt = await ttfb(topo, process.env.TTFB, 150, true);
        console.log(`round ${r} ${mode} ttfb ${process.env.TTFB} median ${tt.medianMs.toFixed(3)} paired ${tt.pairedAddedMs.toFixed(3)}`);
        if (f) await f.stop();
        await clearRules(topo);
        continue;
      }
      const c0 = cpuTimes();
      const t0 = f ? threads(f.pid) : {}; const h0 = process.cpuUsage();
      let perfp; if (process.env.PERF && f) { const { spawn } = await import('node:child_process'); perfp = spawn('perf', ['record', '-g', '-p', String(f.pid), '-o', `/tmp/perf-${mode}.data`, '--', 'sleep', String(Number(seconds) - 1)], { stdio: 'ignore' }); }
      const rate = await connRate(topo, 'https', Number(seconds), cpus);
      if (perfp) await new Promise((r) => perfp.exitCode !== null ? r() : perfp.on('exit', r)); const busy = busyPercent(c0, cpuTimes());
      if (split) { pinProcess(nginx.process.pid, '0-1', true); }
      const t1 = f ? threads(f.pid) : {}; const h1 = process.cpuUsage(h0);
      const per = Object.entries(t1).map(([k, v]) => {
        const a = t0[k] ?? { u: 0, s: 0 };
        return `${k}=${Math.round((v.u - a.u) * 1e6 / rate.requests)}u+${Math.round((v.s - a.s) * 1e6 / rate.requests)}s`;
      }).filter((x) => !/=0u\+0s/.test(x)).join(' ');
      console.log(`round ${r} ${mode.padEnd(12)} ${Math.round(rate.perSecond)} conn/s  ${per} harness=${Math.round((h1.user+h1.system)/rate.requests)} busy=${busy.map(Math.round).join('/')}`);
      if (f?.status && process.env.STATUS) { const st = await f.status(); console.log(JSON.stringify(st).slice(0, 3000)); }
      if (f) await f.stop();
      await clearRules(topo);
    }
  }
} finally { await topo.destroy(); }
