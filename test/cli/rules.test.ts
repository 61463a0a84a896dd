import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_RULES, answerBitSetters, chainRules, parseQueues, printRules, restoreSnippet } from '../../src/cli/rules.js';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..', ...(import.meta.url.includes('/dist/') ? ['..'] : []));
const cli = join(root, 'bin', 'flowgate.js');

t.test('the gateway snippet: connmark bypass before the queue, mark save and verdicts after', async (t) => {
  const text = restoreSnippet(DEFAULT_RULES, 4);
  const lines = text.split('\n').filter((l) => l.startsWith('-A FLOWGATE '));
  t.match(lines[0], /--ctstate INVALID -j DROP/);
  t.match(lines[1], /connmark --mark 0x100\/0x300 -m mark --mark 0x0\/0x300 -j ACCEPT/,
    'an allowed connection\'s packets pass, but not one coming back with a verdict: that goes on to the save');
  t.match(lines[2], /connmark --mark 0x200\/0x300 -j REJECT --reject-with tcp-reset/);
  t.match(lines[3], /-p tcp -m connmark --mark 0x700\/0x700 -m mark --mark 0x400\/0x400 -m conntrack --ctdir REPLY -j FLOWGATE_ANS$/,
    'the server side of a hello with the answer mark goes to the answer chain, before the inspect mark accepts it, if the guard vouched for the packet');
  t.match(lines[4], /connmark --mark 0x300\/0x300 -m conntrack --ctdir REPLY -j ACCEPT/);
  const acks = lines.slice(5, 16);
  t.equal(acks.filter((l) => /-m u32 --u32 0>>24=0x45&&0&0xffff=\d+&&32>>28=\d+&&32>>16&0x37=0x10 -j ACCEPT$/.test(l)).length, 11,
    'bare ACKs skip the queue: one rule per TCP header length');
  t.match(lines[5], /0&0xffff=40&&32>>28=5&&/);
  t.match(lines[15], /0&0xffff=80&&32>>28=15&&/);
  const syns = lines.slice(16, 27);
  t.equal(syns.filter((l) => /-m u32 --u32 0>>24=0x45&&0&0xffff=\d+&&32>>28=\d+&&32>>16&0x07=0x02 -j FLOWGATE_SYN$/.test(l)).length, 11,
    'bare SYNs and SYN-ACKs go to the handshake chain: one rule per TCP header length');
  t.match(lines[27], /mark --mark 0x0\/0x300 -j NFQUEUE --queue-num 0 --queue-bypass/);
  t.match(lines[28], /CONNMARK --save-mark --nfmask 0x700 --ctmask 0x700/, 'the answer bit is saved with the mask');
  t.match(text, /\n\*mangle\n:FLOWGATE_ANSRPF - \[0:0\]\n-A FLOWGATE_ANSRPF -m connmark ! --mark 0x400\/0x400 -j RETURN\n-A FLOWGATE_ANSRPF -j MARK --set-xmark 0x0\/0x400\n-A FLOWGATE_ANSRPF -m conntrack --ctdir REPLY -m rpfilter -j MARK --set-xmark 0x400\/0x400\n-I PREROUTING 1 -p tcp -j FLOWGATE_ANSRPF\nCOMMIT\n\*filter\n/,
    'a gateway without --rpfilter guards the answer chain, ahead of the filter table that relies on it: a server-side packet whose source is routed back the way it came gets the answer bit in its mark (a client\'s fake does not, whatever set the bit before)');
  const withRpf = restoreSnippet({ ...DEFAULT_RULES, rpfilter: true }, 4);
  t.match(withRpf, /-m connmark --mark 0x700\/0x700 -m conntrack --ctdir REPLY -j FLOWGATE_ANS\n/, 'with --rpfilter the answer chain is there, for every server-side packet');
  t.notMatch(withRpf, /\*mangle|FLOWGATE_ANSRPF/, 'with --rpfilter no guard: the raw table drops such packets before conntrack');
  const host4 = restoreSnippet({ ...DEFAULT_RULES, mode: 'host' }, 4);
  t.match(host4, /-m connmark --mark 0x700\/0x700 -m conntrack --ctdir REPLY -j FLOWGATE_HOST_ANS\n/, 'host mode has the answer chain');
  t.notMatch(host4, /\*mangle|ANSRPF/, 'host mode needs no guard: its clients are the host\'s own programs');
  const ans = text.split('\n').filter((l) => l.startsWith('-A FLOWGATE_ANS '));
  t.equal(ans.filter((l) => /-m u32 --u32 0>>24=0x45&&0&0xffff=\d+&&32>>28=\d+&&32>>16&0x37=0x10 -j ACCEPT$/.test(l)).length, 11,
    'the answer chain lets the server\'s bare ACKs by without deciding');
  t.same(ans.slice(11), [
    '-A FLOWGATE_ANS -m u32 --u32 0>>22&0x3C@12>>26&0x3C@0>>16=0x1603&&0>>22&0x3C@12>>26&0x3C@4>>8&0xFFFF=0x0200' +
      '&&0>>22&0x3C@12>>26&0x3C@8>>16&0xFF=0x03&&0>>22&0x3C@12>>26&0x3C@11=0:0xCF21AD73,0xCF21AD75:0xFFFFFFFF -j CONNMARK --set-xmark 0x100/0x700',
    '-A FLOWGATE_ANS -m connmark --mark 0x100/0x700 -j NFLOG --nflog-group 0 --nflog-prefix flowgate-answer',
    '-A FLOWGATE_ANS -m connmark --mark 0x100/0x700 -j ACCEPT',
    '-A FLOWGATE_ANS -j CONNMARK --set-xmark 0x300/0x700',
    '-A FLOWGATE_ANS -j ACCEPT',
  ], 'a ServerHello that is no HelloRetryRequest allows the connection and tells the daemon; any other first data packet clears the answer bit');
  t.match(restoreSnippet(DEFAULT_RULES, 6), /-A FLOWGATE_ANS -m u32 --u32 4>>8&0xFF=6&&52>>26&0x3C@40>>16=0x1603&&52>>26&0x3C@44>>8&0xFFFF=0x0200&&/,
    'IPv6: the payload after the fixed header');
  t.notMatch(restoreSnippet({ ...DEFAULT_RULES, marks: { ...DEFAULT_RULES.marks, answer: 0 } }, 4), /FLOWGATE_ANS|0x700|\*mangle/,
    'answer mark 0: no answer chain and no guard, the mask alone saved');
  t.match(restoreSnippet({ ...DEFAULT_RULES, marks: { ...DEFAULT_RULES.marks, answer: 0x8000 } }, 6),
    /-A FLOWGATE_ANSRPF -m connmark ! --mark 0x8000\/0x8000 -j RETURN\n-A FLOWGATE_ANSRPF -j MARK --set-xmark 0x0\/0x8000\n-A FLOWGATE_ANSRPF -m conntrack --ctdir REPLY -m rpfilter -j MARK --set-xmark 0x8000\/0x8000\n(?:.*\n)*.*-m mark --mark 0x8000\/0x8000 -m conntrack --ctdir REPLY -j FLOWGATE_ANS\n/,
    'the guard vouches with the configured answer bit');
  t.same(text.split('\n').filter((l) => l.startsWith('-A FLOWGATE_SYN')),
    ['-A FLOWGATE_SYN -j NFLOG --nflog-group 0 --nflog-prefix flowgate', '-A FLOWGATE_SYN -j ACCEPT'],
    'the handshake chain logs to group N with the prefix the binding reads, and accepts');
  t.ok(text.indexOf(':FLOWGATE_SYN') < text.indexOf('-A FLOWGATE '), 'the handshake chain exists before a rule jumps to it');
  t.match(restoreSnippet({ ...DEFAULT_RULES, queues: [5, 5] }, 4), /-A FLOWGATE_SYN -j NFLOG --nflog-group 5 --nflog-prefix flowgate\n/, 'group N is the queue number');
  for (const [what, o] of [['--no-handshake-log', { ...DEFAULT_RULES, handshakeLog: false }], ['several queues', { ...DEFAULT_RULES, queues: [0, 3] as [number, number] }]] as const) {
    const plain = restoreSnippet(o, 4);
    t.notMatch(plain, /FLOWGATE_SYN|FLOWGATE_ANS|NFLOG|\*mangle/, `${what}: handshakes are queued, nothing logged, no answer chain`);
    t.equal(plain.split('\n').filter((l) => l.startsWith('-A FLOWGATE ')).length, 20, `${what}: the chain without the handshake rules`);
  }
  const v6 = restoreSnippet(DEFAULT_RULES, 6);
  t.match(v6, /-m u32 --u32 4>>8=0x1406&&52>>28=5&&52>>16&0x37=0x10 -j ACCEPT/, 'IPv6: payload length and next header TCP');
  t.match(v6, /-m u32 --u32 4>>8=0x2806&&52>>28=10&&52>>16&0x07=0x02 -j FLOWGATE_SYN/, 'IPv6 handshakes are logged too');
  t.match(text, /-I FORWARD 1 -p tcp -j FLOWGATE/);
  t.match(printRules({ ...DEFAULT_RULES, queues: [0, 3] }), /--queue-balance 0:3/);
  const host = chainRules({ ...DEFAULT_RULES, mode: 'host' }, 6).map((r) => r.join(' '));
  t.same(host.slice(0, 2), ['-i lo -j RETURN', '-o lo -j RETURN'], 'host mode never diverts loopback');
  const quic = chainRules({ ...DEFAULT_RULES, rejectQuic: true }, 6)[0]!.join(' ');
  t.equal(quic, '-p udp --dport 443 -j REJECT --reject-with icmp6-port-unreachable');
  const marks = restoreSnippet({ ...DEFAULT_RULES, marks: { mask: 0xf000, allow: 0x1000, block: 0x2000, inspect: 0x3000 } }, 4);
  t.match(marks, /connmark --mark 0x1000\/0xf000 -m mark --mark 0x0\/0xf000 -j ACCEPT/, 'marks are configurable');
});

t.test('the rules the README and iptables/ show are the ones `rules print` makes', async (t) => {
  const printed = new Set(printRules(DEFAULT_RULES).split('\n'));
  const readme = readFileSync(join(root, 'README.md'), 'utf8').split('\n').filter((l) => /^-A FLOWGATE/.test(l));
  t.ok(readme.length >= 10, `the README shows the chain (${readme.length} lines)`);
  t.same(readme.filter((l) => !printed.has(l)), [], 'every rule line of the README is printed as it reads');
  const rpf = new Set(printRules({ ...DEFAULT_RULES, rpfilter: true }).split('\n'));
  const shown = readFileSync(join(root, 'iptables', 'README.md'), 'utf8').split('\n').filter((l) => /FLOWGATE_RPF/.test(l));
  t.equal(shown.length, 3, 'iptables/README.md shows the --rpfilter chain');
  t.same(shown.filter((l) => !rpf.has(l)), [], 'as `rules print --rpfilter` prints it');
  const answer = readFileSync(join(root, 'iptables', 'README.md'), 'utf8').split('\n').filter((l) => /^-A FLOWGATE_ANS|-j FLOWGATE_ANS/.test(l));
  t.ok(answer.length >= 8, `iptables/README.md shows the answer chain and its guard (${answer.length} lines)`);
  t.same(answer.filter((l) => !printed.has(l)), [], 'as `rules print` prints them');
  for (const mode of ['gateway', 'host'] as const) {
    for (const family of [4, 6] as const) {
      const file = readFileSync(join(root, 'iptables', `flowgate-${mode}.rules.v${family}`), 'utf8');
      t.equal(file, restoreSnippet({ ...DEFAULT_RULES, mode }, family), `iptables/flowgate-${mode}.rules.v${family} is current`);
    }
  }
});

t.test('queue arguments', async (t) => {
  t.same(parseQueues(), [0, 0]);
  t.same(parseQueues('7'), [7, 7]);
  t.same(parseQueues(undefined, '2:5'), [2, 5]);
  t.throws(() => parseQueues('1', '1:2'), { code: 'ERR_USAGE' });
  t.throws(() => parseQueues(undefined, '5:2'), { code: 'ERR_USAGE' });
  t.throws(() => parseQueues('70000'), { code: 'ERR_USAGE' });
});

t.test('apply is idempotent and remove restores the tables exactly (in a private namespace)', async (t) => {
  const ns = `fgrules-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => execFileSync('ip', ['netns', 'del', ns]));
  const inNs = (...argv: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8' });
  // Some rules of the operator's own, which must survive untouched.
  inNs('iptables', '-A', 'FORWARD', '-s', '192.0.2.0/24', '-j', 'ACCEPT');
  inNs('ip6tables', '-A', 'INPUT', '-p', 'tcp', '--dport', '22', '-j', 'ACCEPT');
  // A table with no rules left (iptables-nft keeps the raw table --rpfilter created; README) is as none.
  const tables = (text: string) => text.replace(/^#.*\n/gm, '').replace(/\[\d+:\d+\]/g, '')
    .split(/(?=^\*)/m).filter((table) => /^-A /m.test(table)).join('');
  const save = () => tables(inNs('iptables-save')) + tables(inNs('ip6tables-save'));
  const before = save();
  for (const mode of ['gateway', 'host']) {
    inNs(process.execPath, cli, 'rules', 'apply', '--mode', mode);
    const once = save();
    inNs(process.execPath, cli, 'rules', 'apply', '--mode', mode);
    t.equal(save(), once, `${mode}: applying twice changes nothing`);
    t.match(once, mode === 'gateway' ? /-A FORWARD -p tcp -j FLOWGATE/ : /-A OUTPUT -p tcp -j FLOWGATE_HOST/);
    // (iptables-save leaves out group 0, the default)
    t.match(once, mode === 'gateway' ? /-A FLOWGATE_SYN -j NFLOG\b/ : /-A FLOWGATE_HOST_SYN -j NFLOG\b/);
  }
  // Applied again without the handshake log: no jump to the handshake chain, and the chain is gone.
  inNs(process.execPath, cli, 'rules', 'apply', '--no-handshake-log');
  t.notMatch(save(), /FLOWGATE_SYN/, '--no-handshake-log: the handshake chain is gone');
  // Reverse-path filtering in raw PREROUTING, once however often applied; applying without it takes it out.
  inNs(process.execPath, cli, 'rules', 'apply', '--rpfilter');
  const rpf = save();
  inNs(process.execPath, cli, 'rules', 'apply', '--rpfilter');
  t.equal(save(), rpf, '--rpfilter: applying twice changes nothing');
  for (const family of ['iptables', 'ip6tables']) {
    t.match(inNs(`${family}-save`, '-t', 'raw'), /-A PREROUTING -p tcp -j FLOWGATE_RPF\n(?:.*\n)*-A FLOWGATE_RPF -m rpfilter --invert -j DROP\n/,
      `${family}: TCP packets whose source is routed elsewhere are dropped before conntrack`);
  }
  t.match(rpf, /-A FLOWGATE_ANS -m connmark --mark 0x100\/0x700 -j NFLOG --nflog-prefix flowgate-answer\n/, '--rpfilter: the answer chain');
  t.notMatch(rpf, /FLOWGATE_ANSRPF/, '--rpfilter: no guard of the answer chain');
  inNs(process.execPath, cli, 'rules', 'apply');
  const plain = save();
  t.notMatch(plain, /FLOWGATE_RPF/, 'applied without --rpfilter: the check is gone');
  for (const family of ['iptables', 'ip6tables']) {
    t.match(inNs(`${family}-save`, '-t', 'mangle'), /-A PREROUTING -p tcp -j FLOWGATE_ANSRPF\n(?:.*\n)*-A FLOWGATE_ANSRPF -m connmark ! --mark 0x400\/0x400 -j RETURN\n-A FLOWGATE_ANSRPF -j MARK --set-xmark 0x0\/0x400\n-A FLOWGATE_ANSRPF -m conntrack --ctdir REPLY -m rpfilter -j MARK --set-xmark 0x400\/0x400\n/,
      `${family}: the answer chain stays, guarded`);
  }
  inNs(process.execPath, cli, 'rules', 'apply');
  t.equal(save(), plain, 'the guard: applying twice changes nothing');
  inNs(process.execPath, cli, 'rules', 'remove', '--mode', 'gateway');
  inNs(process.execPath, cli, 'rules', 'remove', '--mode', 'host');
  t.equal(save(), before, 'remove restores the tables exactly, the guard\'s mangle chain gone too');
  inNs(process.execPath, cli, 'rules', 'apply', '--rpfilter');
  inNs(process.execPath, cli, 'rules', 'remove', '--mode', 'gateway');
  t.equal(save(), before, 'and so with --rpfilter');
  inNs(process.execPath, cli, 'rules', 'remove');
  t.equal(save(), before, 'removing again is harmless');
});

t.test('a change of options never leaves the answer chain unguarded: PREROUTING first, old checks last (in a private namespace)', async (t) => {
  const ns = `fgorder-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => execFileSync('ip', ['netns', 'del', ns]));
  // Wrappers in front of the real commands write down each call: the tables a restore fills, or
  // the table, command and chain of an iptables call.
  const dir = mkdtempSync(join(tmpdir(), 'fgorder-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'log');
  for (const name of ['iptables', 'ip6tables', 'iptables-restore', 'ip6tables-restore']) {
    const real = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    const body = name.endsWith('-restore')
      ? `in=$(cat); printf '%s\\n' "$in" | grep '^\\*' | sed 's/^/${name} /' >> ${log}; ` +
        // With the file fail-mangle present, a restore of the table FAIL_TABLE (mangle) fails as without the rpfilter match.
        `if [ -e ${dir}/fail-mangle ] && printf '%s\\n' "$in" | grep -q "^\\*\${FAIL_TABLE:-mangle}"; then echo "Couldn't load match \\\`rpfilter'" >&2; exit 1; fi; ` +
        `printf '%s\\n' "$in" | exec ${real} "$@"`
      : `echo "${name} $*" | grep -E -- ' -(I|D|A|X) ' | sed -E 's/ -w//; s/ -t / /; s/ (-[IDAX]) (\\S+).*/ \\1 \\2/' >> ${log}; exec ${real} "$@"`;
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  }
  const run = (...args: string[]) => {
    writeFileSync(log, '');
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, cli, 'rules', ...args, '--family', '4'],
      { env: { ...process.env, PATH: `${dir}:${process.env.PATH}` }, stdio: 'ignore' });
    return readFileSync(log, 'utf8').trim().split('\n');
  };
  const apply = (...args: string[]) => run('apply', ...args);
  const inNs = (...argv: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8' }).replace(/^#.*\n/gm, '');
  const at = (calls: string[], call: string) => {
    const i = calls.indexOf(call);
    t.not(i, -1, `called: ${call}`);
    return i;
  };
  apply();
  // --rpfilter after the guard: the raw table's drop is in place before the filter table stops asking the guard.
  let calls = apply('--rpfilter');
  t.ok(at(calls, 'iptables raw -I PREROUTING') < at(calls, 'iptables-restore *filter'), 'the raw check jumped to before the filter table changes');
  t.ok(at(calls, 'iptables-restore *filter') < at(calls, 'iptables mangle -D PREROUTING'), 'the guard goes only after the filter table changed');
  // And back: the guard vouches before the filter table asks it to, the raw check goes last.
  calls = apply();
  t.ok(at(calls, 'iptables-restore *mangle') < at(calls, 'iptables mangle -I PREROUTING'), 'the guard filled before it is jumped to');
  t.ok(at(calls, 'iptables mangle -I PREROUTING') < at(calls, 'iptables-restore *filter'), 'the guard jumped to before the filter table changes');
  t.ok(at(calls, 'iptables-restore *filter') < at(calls, 'iptables raw -D PREROUTING'), 'the raw check goes only after the filter table changed');
  // Without the handshake log there is no answer chain: the guard goes after the filter table changed.
  calls = apply('--no-handshake-log');
  t.ok(at(calls, 'iptables-restore *filter') < at(calls, 'iptables mangle -D PREROUTING'), 'no handshake log: the guard goes last');
  t.equal(calls.indexOf('iptables-restore *mangle'), -1, 'and is not filled');
  apply();
  // remove: the jump to our chain first, the guard after.
  calls = run('remove');
  t.ok(at(calls, 'iptables filter -D FORWARD') < at(calls, 'iptables mangle -D PREROUTING'), 'remove: the filter jump goes before the guard');
  // A kernel without the rpfilter match (a restore that fails on the mangle table here): the family
  // goes without the answer chain, said in a warning; --rpfilter is an error before any filter table changes.
  writeFileSync(join(dir, 'fail-mangle'), '');
  const res = spawnSync('ip', ['netns', 'exec', ns, process.execPath, cli, 'rules', 'apply', '--family', '4'],
    { env: { ...process.env, PATH: `${dir}:${process.env.PATH}` }, encoding: 'utf8' });
  t.equal(res.status, 0, 'no guard: still applied');
  t.match(res.stderr, /^flowgate: warning: iptables: the answer chain's guard \(mangle table, rpfilter match\) could not be installed, so this family goes without the answer chain .*\n/);
  const saved = inNs('iptables-save');
  t.notMatch(saved, /FLOWGATE_ANS/, 'no answer chain, no guard');
  t.match(saved, /--save-mark --nfmask 0x300 --ctmask 0x300/, 'the mask alone saved');
  const rpf = spawnSync('ip', ['netns', 'exec', ns, process.execPath, cli, 'rules', 'apply', '--family', '4', '--rpfilter'],
    { env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, FAIL_TABLE: 'raw' }, encoding: 'utf8' });
  t.equal(rpf.status, 1, '--rpfilter without the match: exit 1');
  t.match(rpf.stderr, /failed: [^]*--rpfilter needs the kernel's rpfilter match, module ipt_rpfilter or ip6t_rpfilter/);
  t.equal(inNs('iptables-save'), saved, 'nothing changed');
  rmSync(join(dir, 'fail-mangle'));
  execFileSync('ip', ['netns', 'exec', ns, process.execPath, cli, 'rules', 'remove']);
});

t.test('apply warns when conntrack is set to let out-of-window packets through (in a private namespace)', async (t) => {
  const ns = `fgliberal-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => execFileSync('ip', ['netns', 'del', ns]));
  const apply = () => spawnSync('ip', ['netns', 'exec', ns, process.execPath, cli, 'rules', 'apply'], { encoding: 'utf8' });
  const first = apply(); // loads conntrack in the namespace, where be_liberal starts at 0 and tcp_loose at 1
  t.equal(first.status, 0);
  t.match(first.stderr, /^flowgate: warning: nf_conntrack_tcp_loose is 1 .*nf_conntrack_tcp_loose=0: .*\n$/,
    'the namespace defaults: tcp_loose, which lets conntrack pick up a connection it forgot, is said');
  t.notMatch(first.stderr, /be_liberal/, 'be_liberal at 0: nothing to say');
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_loose=0']);
  t.equal(apply().stderr, '', 'tcp_loose at 0: nothing to say');
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_be_liberal=1']);
  const liberal = apply();
  t.equal(liberal.status, 0, 'a warning, not a failure');
  t.match(liberal.stderr, /^flowgate: warning: nf_conntrack_tcp_be_liberal is 1 .*sysctl -w net\.netfilter\.nf_conntrack_tcp_be_liberal=0\)\n$/);
});

t.test('the mangle rules that could vouch for a packet in the guard\'s place are found', async (t) => {
  const save = [
    '*mangle',
    ':PREROUTING ACCEPT [0:0]',
    '-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff',
    '-A PREROUTING -p tcp -j FLOWGATE_ANSRPF',
    '-A PREROUTING -i eth9 -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff',
    '-A PREROUTING -j CONNMARK --restore-mark --nfmask 0x300 --ctmask 0xffffffff',
    '-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0x4ff',
    '-A FORWARD -j MARK --set-xmark 0x400/0x400',
    '-A FORWARD -j MARK --set-xmark 0x3/0xffffffff',
    '-A FORWARD -j MARK --set-xmark 0x0/0x400',
    '-A FORWARD -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff',
    '-A MINE -j MARK --set-xmark 0x401/0xffffffff',
    '-A POSTROUTING -j MARK --set-xmark 0x400/0x400',
    '-A OUTPUT -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff',
    '-A FLOWGATE_ANSRPF -m conntrack --ctdir REPLY -m rpfilter -j MARK --set-xmark 0x400/0x400',
    'COMMIT',
  ].join('\n');
  t.same(answerBitSetters(save, DEFAULT_RULES), [
    '-A PREROUTING -i eth9 -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff',
    '-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0x4ff',
    '-A FORWARD -j MARK --set-xmark 0x400/0x400',
    '-A MINE -j MARK --set-xmark 0x401/0xffffffff',
  ], 'restores covering the bit and marks setting it, after the guard (before it, the guard clears the bit), in any chain a forwarded packet may take before FORWARD\'s filter; not ours, nor clearing ones');
  t.same(answerBitSetters(save, { ...DEFAULT_RULES, marks: { ...DEFAULT_RULES.marks, answer: 0x800 } }),
    ['-A PREROUTING -i eth9 -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff'],
    'another answer bit: only the restore whose masks cover it');
});

t.test('apply warns of a mangle rule that restores the answer bit (in a private namespace)', async (t) => {
  const ns = `fgrestore-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => execFileSync('ip', ['netns', 'del', ns]));
  const inNs = (...argv: string[]) => spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8' });
  inNs('sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_loose=0');
  t.equal(inNs(process.execPath, cli, 'rules', 'apply').stderr.replace(/^flowgate: warning: nf_conntrack_tcp_loose .*\n/m, ''), '',
    'nothing to say of a mangle table of our own');
  inNs('iptables', '-t', 'mangle', '-A', 'PREROUTING', '-j', 'CONNMARK', '--restore-mark');
  inNs('ip6tables', '-t', 'mangle', '-A', 'FORWARD', '-j', 'CONNMARK', '--restore-mark', '--mask', '0x300');
  const res = inNs(process.execPath, cli, 'rules', 'apply');
  t.equal(res.status, 0, 'a warning, not a failure');
  const warnings = res.stderr.split('\n').filter((l) => /mangle rule/.test(l));
  t.equal(warnings.length, 1, 'the restore after the guard, not the one whose mask leaves the bit out');
  t.match(warnings[0], /^flowgate: warning: iptables: the mangle rule '-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff' can put the answer bit 0x400 in the mark of a packet the guard did not vouch for/);
  t.equal(inNs(process.execPath, cli, 'rules', 'apply', '--rpfilter').stderr.match(/mangle rule/g), null,
    'with --rpfilter the answer chain does not ask for the mark: nothing to say');
  inNs(process.execPath, cli, 'rules', 'remove');
});

t.test('--rpfilter adds a raw-table section to the gateway snippet, and nothing without it', async (t) => {
  for (const family of [4, 6] as const) {
    const withIt = restoreSnippet({ ...DEFAULT_RULES, rpfilter: true }, family);
    t.match(withIt, /\n\*raw\n:FLOWGATE_RPF - \[0:0\]\n-A FLOWGATE_RPF -m rpfilter --invert -j DROP\n-I PREROUTING 1 -p tcp -j FLOWGATE_RPF\nCOMMIT\n\*filter\n/);
    t.notMatch(restoreSnippet(DEFAULT_RULES, family), /\*raw|FLOWGATE_RPF/);
  }
});

t.test('bad usage: one clear line, exit 2', async (t) => {
  for (const args of [['rules', 'bogus'], ['rules', '--queue', 'x'], ['rules', 'print', '--mode', 'host', '--rpfilter'], ['run', '--queue', '1', '--queues', '1:2'], ['nosuch']]) {
    let code = 0;
    let stderr = '';
    try {
      execFileSync(process.execPath, [cli, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as { status: number; stderr: string };
      code = e.status;
      stderr = e.stderr;
    }
    t.equal(code, 2, `${args.join(' ')}: exit 2`);
    t.notMatch(stderr, /\n\s+at /, 'no stack trace');
  }
});
