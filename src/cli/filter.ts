/**
 * One queue's filter: the kernel queue bound to an engine with the config's policy. `run`
 * starts one in the main thread, `run --queues A:B` one per worker thread.
 */
import { MAX_HELLO_NAMES, type NfQueue } from '../capture/queue.js';
import { FlowgateError } from '../errors.js';
import { attachQueue } from '../capture/attach.js';
import { Engine } from '../filter/engine.js';
import { engineOptionsFromConfig } from '../filter/from-config.js';
import type { DecideFn, FlowgateEvent } from '../filter/types.js';
import type { Config } from '../policy/config-types.js';
import { compilePolicy, type Policy } from '../policy/policy.js';
import type { Logger } from './log.js';

/** A bound queue and its engine. */
export class QueueFilter {
  readonly engine: Engine;
  readonly queue: NfQueue;
  private policy: Policy;
  private readonly ticker: NodeJS.Timeout;
  /** Names (`port name`) the current policy was asked about for the binding (allowHelloName), either answer. */
  private helloAsked = new Set<string>();

  /**
   * Binds `queueNum` and starts filtering. `onEvent` receives every event; `idPrefix` keeps flow
   * ids unique across workers; `logGroup` is the NFLOG group to read handshakes from (-1: none;
   * see QueueOptions.logGroup and rules.ts handshakeLogRules).
   */
  constructor(private config: Config, readonly queueNum: number, onEvent: (e: FlowgateEvent) => void,
    private readonly log: Logger, idPrefix = '', logGroup = -1) {
    this.policy = compilePolicy(config);
    const decide: DecideFn = (info) => {
      const decision = this.policy.decide(info);
      if (info.app === 'tls' && info.sni && !(decision instanceof Promise) && decision.verdict === 'allow') {
        this.teachHello(info.sni, info.dport);
      }
      return decision;
    };
    const link = attachQueue({
      queue: queueNum, maxLen: config.queueMaxlen, failOpen: config.failOpen, gso: true,
      // The daemon never decides a flow on its SYN (no newFlow hook), so the binding may pass
      // handshakes at once; see QueueOptions.acceptHandshake.
      acceptHandshake: true,
      logGroup,
    }, (err) => log.error('queue error', { queue: queueNum, code: err.code, errno: err.errno, message: err.message }));
    this.engine = new Engine({
      decide,
      sink: link.sink,
      options: { ...engineOptionsFromConfig(config), verifyChecksums: true, strictTcp: true, idPrefix },
      onEvent,
      deferEvents: true,
      bindingHellos: true,
      // The rules copy the ServerHello that ends a hello's inspection to the log group (answerRules).
      kernelAnswers: logGroup >= 0,
    });
    const engine = this.engine;
    let queue: NfQueue;
    try {
      queue = link.bind(engine);
    } catch (e) {
      if (!(e instanceof FlowgateError && e.code === 'ERR_LOG_BUSY')) throw e;
      throw new FlowgateError(e.code, `${e.message}; free it, or set handshake_log: false and apply the rules with ` +
        '`flowgate rules apply --no-handshake-log`', { cause: e, errno: e.errno });
    }
    this.queue = queue;
    this.ticker = setInterval(() => engine.tick(), 1000);
  }

  /**
   * After the policy allowed a TLS hello naming `name`: if it allows every plain hello with that
   * name and port, the binding lets the next ones on by itself (NfQueue.allowHelloName).
   */
  private teachHello(name: string, port: number): void {
    const key = `${port} ${name}`;
    if (this.helloAsked.has(key) || this.helloAsked.size >= MAX_HELLO_NAMES) return;
    this.helloAsked.add(key);
    if (this.policy.allowsPlainHello(name, port)) this.queue.allowHelloName(name, port);
  }

  /** Swaps in a new config's policy; decisions in flight finish with the old one, which is closed after. */
  reload(next: Config): void {
    const old = this.policy;
    // The binding forgets the old policy's names first: nothing it lets on is the old policy's.
    this.queue.clearHelloNames();
    this.helloAsked = new Set();
    this.policy = compilePolicy(next);
    this.config = next;
    setTimeout(() => void old.close(), next.decisionTimeoutMs + 1000).unref();
  }

  /** Settles every held packet with `on_shutdown`, sends the verdicts and unbinds. */
  async stop(): Promise<void> {
    clearInterval(this.ticker);
    this.engine.shutdown(this.config.onShutdown);
    this.engine.flushEvents(); // before anything that can throw: the events of the settled flows
    this.queue.flush();
    this.queue.close();
    await this.policy.close();
    this.log.info('unbound queue', { queue: this.queueNum, received: this.engine.stats.received,
      verdicts: this.engine.stats.verdicts, held: this.engine.stats.held });
  }
}
