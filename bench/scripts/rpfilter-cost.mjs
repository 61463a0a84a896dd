// Bulk throughput (iperf3) and new HTTPS connections/s with and without `flowgate rules apply
// --rpfilter`, flowgate running, taking turns. Root; run from the repository root after `npm run build`.
import { createTopology, startNginx } from '../../dist/test/e2e/harness/index.js';
import { applyRules } from '../../dist/test/e2e/flowgate.js';
import { clearRules, startFlowgateDaemon } from '../../dist/bench/lib/filters.js';
import { installHosts } from '../../dist/bench/lib/hosts.js';
import { bulk, startIperfServer, connRate, HOST, tuneClient } from '../../dist/bench/lib/measure.js';
const topo = await createTopology();
try {
  installHosts(topo, [HOST]);
  await startNginx(topo, {});
  await startIperfServer(topo);
  await tuneClient(topo);
  for (let r = 0; r < 3; r++) {
    for (const mode of ['plain', 'rpfilter']) {
      await applyRules(topo, mode === 'rpfilter' ? ['--rpfilter'] : []);
      const f = await startFlowgateDaemon(topo, 'default: allow\n', { name: `f${r}${mode}` });
      await connRate(topo, 'https', 1);
      const b = await bulk(topo, 5);
      const c = await connRate(topo, 'https', 5);
      console.log(`round ${r} ${mode.padEnd(9)} bulk ${b.gbps?.toFixed?.(2) ?? JSON.stringify(b).slice(0, 80)} Gbit/s  https ${Math.round(c.perSecond)} conn/s`);
      await f.stop();
      await clearRules(topo);
      await topo.exec('gw', [process.execPath, '/work/main/bin/flowgate.js', 'rules', 'remove']);
    }
  }
} finally { await topo.destroy(); }
