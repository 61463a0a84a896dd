#!/usr/bin/env node
/*
 * Accepts every packet of one NFQUEUE with the npm `nfqueue` binding (0.3.2): the "plain Node
 * binding" reference of the benchmark. One packet per callback, one verdict per packet, which
 * is what the binding offers (no batch verdicts, no GSO flag, default queue length 1024).
 *
 *   usage: node nfqueue-accept.cjs PREFIX QUEUE
 *
 * PREFIX is the folder the binding was installed into (`npm install --prefix PREFIX
 * nfqueue@0.3.2`). Prints "queue N bound" on stderr once bound; on SIGTERM/SIGINT prints
 * "packets=N" on stdout and exits 0 (the binding has no close: the kernel unbinds the
 * socket when the process exits).
 */
'use strict';
const { createRequire } = require('node:module');
const path = require('node:path');

const [prefix, queueArg] = process.argv.slice(2);
if (prefix === undefined) {
  process.stderr.write('usage: node nfqueue-accept.cjs PREFIX QUEUE\n');
  process.exit(2);
}
const queue = Number(queueArg ?? 0);
const nfq = createRequire(path.join(path.resolve(prefix), 'package.json'))('nfqueue');
let packets = 0;
// 8 MiB receive buffer, like the C loop.
nfq.createQueueHandler(queue, 8 * 1024 * 1024, (pkt) => {
  packets++;
  pkt.setVerdict(nfq.NF_ACCEPT);
});
process.stderr.write(`nfqueue-accept: queue ${queue} bound\n`);
const stop = () => process.stdout.write(`packets=${packets}\n`, () => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
