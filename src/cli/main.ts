/**
 * The `flowgate` command line (CONTRACT.md). Each command loads only what it needs, so
 * `flowgate rules` works without the native addon and `replay` without root.
 * Exit codes: 0 success, 2 bad usage or config, 1 runtime failure. Errors are one line
 * unless --debug.
 */
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, FlowgateError, UsageError } from '../errors.js';

/** Parses argv and runs the command; exits the process with the right code. */
export async function main(argv: string[]): Promise<void> {
  const debug = argv.includes('--debug');
  try {
    const code = await dispatch(argv);
    process.exitCode = code;
  } catch (err) {
    process.exitCode = report(err, debug);
  }
}

function report(err: unknown, debug: boolean): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2; // commander printed it already
  if (debug && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  if (err instanceof ConfigError || err instanceof UsageError) {
    if (!debug) process.stderr.write(`flowgate: ${err.message}\n`);
    return 2;
  }
  if (err instanceof FlowgateError) {
    if (!debug) process.stderr.write(`flowgate: ${err.message}\n`);
    return err.code === 'ERR_CONFIG' || err.code === 'ERR_USAGE' ? 2 : 1;
  }
  if (!debug) process.stderr.write(`flowgate: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}

function intArg(name: string, max: number) {
  return (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) > max) throw new UsageError(`${name} takes a whole number from 0 to ${max}, got "${v}"`);
    return Number(v);
  };
}

async function dispatch(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command('flowgate')
    .description('Inline TCP flow filter: NFQUEUE, reassembly, TLS/HTTP inspection, asynchronous policy')
    .version(await version())
    .option('--debug', 'show stack traces')
    .exitOverride()
    .showHelpAfterError('(run flowgate --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program.command('run')
    .description('bind the kernel queue and filter until SIGTERM/SIGINT')
    .option('-c, --config <file>', 'YAML config (default: built-in observe policy)')
    .option('--queue <n>', 'queue number (overrides the config)', intArg('--queue', 65535))
    .option('--queues <a:b>', 'one worker per queue in the range')
    .addOption(new Option('--log-format <format>', 'events and logs').choices(['json', 'pretty']))
    .action(async (o: { config?: string; queue?: number; queues?: string; logFormat?: 'json' | 'pretty' }) => {
      if (o.queue !== undefined && o.queues !== undefined) throw new UsageError('use either --queue or --queues, not both');
      if (o.queues !== undefined) {
        const { parseQueues } = await import('./rules.js');
        const range = parseQueues(undefined, o.queues);
        const { runWorkers } = await import('./workers.js');
        code = await runWorkers({ config: o.config, queues: range, logFormat: o.logFormat, debug: program.opts().debug });
        return;
      }
      const { runDaemon } = await import('./run.js');
      code = await runDaemon({ config: o.config, queue: o.queue, logFormat: o.logFormat, debug: program.opts().debug });
    });

  program.command('replay')
    .description('run the pipeline over pcap/pcapng files and print the decisions it would make')
    .argument('<files...>', 'capture files')
    .option('-c, --config <file>', 'YAML config (default: built-in observe policy)')
    .addOption(new Option('--format <format>', 'output').choices(['json', 'table']).default('json'))
    .option('--policy-latency <ms>', 'simulate a policy that answers after this many ms', intArg('--policy-latency', 3600000))
    .action(async (files: string[], o: { config?: string; format: 'json' | 'table'; policyLatency?: number }) => {
      const { replayFiles } = await import('./replay.js');
      code = await replayFiles(files, o);
    });

  program.command('rules')
    .description('print, apply or remove the iptables rules that divert TCP to the queue')
    .argument('[action]', 'print | apply | remove', 'print')
    .addOption(new Option('--mode <mode>', 'where flowgate sits').choices(['gateway', 'host']).default('gateway'))
    .option('--queue <n>', 'queue number')
    .option('--queues <a:b>', 'balance flows over a range of queues')
    .addOption(new Option('--family <f>', 'IP version').choices(['4', '6', 'both']).default('both'))
    .option('-c, --config <file>', 'take queue, marks and handshake_log from this config')
    .option('--reject-quic', 'reject UDP 443 so browsers fall back to TCP')
    .option('--rpfilter', 'gateway: drop TCP packets whose source is routed out of another interface than they came in by (spoofed), before conntrack sees them')
    .option('--no-handshake-log', 'queue bare SYN/SYN-ACKs instead of logging them to NFLOG group N (for `handshake_log: false`)')
    .action(async (action: string, o: {
      mode: 'gateway' | 'host'; queue?: string; queues?: string; family: '4' | '6' | 'both'; config?: string;
      rejectQuic?: boolean; handshakeLog: boolean; rpfilter?: boolean;
    }) => {
      const rules = await import('./rules.js');
      if (!['print', 'apply', 'remove'].includes(action)) {
        throw new UsageError(`unknown rules action "${action}": use print, apply or remove`);
      }
      if (o.rpfilter === true && o.mode !== 'gateway') {
        throw new UsageError('--rpfilter is for --mode gateway: a host\'s own connections have no other side to spoof from');
      }
      let queues = rules.parseQueues(o.queue, o.queues);
      let marks = rules.DEFAULT_RULES.marks;
      let handshakeLog = o.handshakeLog;
      if (o.config !== undefined) {
        const { loadConfig } = await import('../policy/config.js');
        const cfg = await loadConfig(o.config);
        marks = cfg.marks;
        handshakeLog &&= cfg.handshakeLog;
        if (o.queue === undefined && o.queues === undefined) queues = [cfg.queues.first, cfg.queues.last];
      }
      const ro = { ...rules.DEFAULT_RULES, mode: o.mode, queues, family: o.family, marks, rejectQuic: o.rejectQuic === true, handshakeLog,
        rpfilter: o.rpfilter === true };
      if (action === 'print') process.stdout.write(rules.printRules(ro));
      else if (action === 'apply') {
        const applied = await rules.applyRules(ro);
        const { kernelWarnings } = await import('./preflight.js');
        for (const w of [...applied, ...kernelWarnings()]) process.stderr.write(`flowgate: warning: ${w}\n`);
      }
      else await rules.removeRules(ro);
    });

  program.command('check')
    .description('validate a config: exit 0, or exit 2 with FILE:LINE:COL: message lines')
    .requiredOption('-c, --config <file>', 'YAML config')
    .action(async (o: { config: string }) => {
      const { checkConfigFile } = await import('../policy/check.js');
      const errors = await checkConfigFile(o.config);
      for (const e of errors) process.stderr.write(`${e.message}\n`);
      if (errors.length === 0) process.stdout.write(`${o.config}: ok\n`);
      code = errors.length === 0 ? 0 : 2;
    });

  for (const what of ['status', 'flows'] as const) {
    program.command(what)
      .description(what === 'status' ? 'counters of the running daemon' : 'live flows and what each waits for')
      .option('--socket <path>', 'control socket', '/run/flowgate/control.sock')
      .action(async (o: { socket: string }) => {
        const { askControl } = await import('./control.js');
        const answer = await askControl(o.socket, what);
        process.stdout.write(JSON.stringify(answer, null, 2) + '\n');
      });
  }

  program.command('demo')
    .description('(root) build a private client-gateway-server sandbox and show flowgate deciding real traffic')
    .action(async () => {
      const { runDemo } = await import('./demo.js');
      code = await runDemo();
    });

  await program.parseAsync(argv);
  return code;
}

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const { fileURLToPath } = await import('node:url');
  const path = await import('node:path');
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      return (JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      dir = path.dirname(dir);
    }
  }
  return '0.0.0';
}
