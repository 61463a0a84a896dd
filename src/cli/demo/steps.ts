/**
 * The client actions of the tour, what each should show, and how its outcome is judged and
 * told: curl from the client namespace, matched to flowgate's decision events by client port.
 */
import type { DecisionEvent } from '../../filter/types.js';
import { SLOW_POLICY_MS } from './assets.js';
import { curl, type Transfer } from './curl.js';
import { fmtMs, type Narrator } from './narrate.js';
import type { Sandbox } from './sandbox.js';

/** What a step should show. */
export type Expect = 'allow' | 'block' | 'slow' | 'keepalive';

/** One client action. */
export interface Step {
  expect: Expect;
  urls: string[];
}

/** The tour: allowed, blocked and slow names over HTTP and HTTPS, then two requests on one connection. */
export const STEPS: readonly Step[] = [
  { expect: 'allow', urls: ['http://allowed.test/'] },
  { expect: 'allow', urls: ['https://allowed.test/'] },
  { expect: 'block', urls: ['http://blocked.test/'] },
  { expect: 'block', urls: ['https://blocked.test/'] },
  { expect: 'slow', urls: ['http://slow.test/'] },
  { expect: 'slow', urls: ['https://slow.test/'] },
  { expect: 'keepalive', urls: ['http://allowed.test/one', 'http://allowed.test/two'] },
];

/** What each kind of step should show, for the summary of a failed demo. */
export const EXPECTED: Readonly<Record<Expect, string>> = {
  allow: 'should be allowed',
  block: 'should be reset at once',
  slow: 'should wait for the policy, then work',
  keepalive: 'should get two decisions on one flow',
};

/** A blocked connection must fail within this many ms to count as "fast". */
export const FAST_RESET_MS = 1000;

/** What the tour shares with each step. */
export interface StepContext {
  sb: Sandbox;
  say: Narrator;
  /** The origin's certificate, which curl trusts. */
  cacert: string;
  /** Decision events flowgate has printed so far. */
  decisions: DecisionEvent[];
  /** Host names of the requests the origin has answered so far. */
  originHosts: string[];
}

/** What happened in one step. */
export interface StepResult {
  ok: boolean;
  transfers: Transfer[];
  decisions: DecisionEvent[];
}

/** Runs one step and narrates it; resolves with whether it showed what it should. */
export async function runStep(ctx: StepContext, step: Step): Promise<StepResult> {
  const transfers = await curl(ctx.sb, step.urls, { server: ctx.sb.ip.server, cacert: ctx.cacert });
  const want = step.expect === 'keepalive' ? 2 : 1;
  const decisions = await decisionsFor(ctx, transfers, want, 1500);
  const judged = judge(ctx, step, transfers, decisions);
  const { say } = ctx;
  const label = step.expect === 'keepalive'
    ? `${step.urls[0]} + ${new URL(step.urls[1]!).pathname}`
    : step.urls[0]!;
  const ms = transfers.reduce((a, t) => a + t.ms, 0);
  say.check(judged.ok, `${label.padEnd(34)} ${judged.text.padEnd(32)} ${fmtMs(ms).padStart(7)}` +
    (judged.note !== undefined ? say.dim(`  ${judged.note}`) : ''));
  for (const d of decisions) say.decision(d);
  if (decisions.length === 0) say.line(`      ${say.red('no decision event from flowgate')}`);
  for (const p of judged.problems) say.line(`      ${say.red(p)}`);
  if (judged.after !== undefined) say.line(`      ${judged.ok ? say.green('→') : say.red('→')} ${judged.after}`);
  return { ok: judged.ok, transfers, decisions };
}

/** Waits (up to timeoutMs) for `want` decisions on the transfers' client ports. */
async function decisionsFor(ctx: StepContext, transfers: Transfer[], want: number, timeoutMs: number): Promise<DecisionEvent[]> {
  const ports = new Set(transfers.map((t) => t.localPort).filter((p) => p !== 0));
  const names = new Set(transfers.map((t) => new URL(t.url).hostname));
  const match = () => ctx.decisions.filter((d) => ports.size > 0
    ? ports.has(d.sport)
    : names.has(d.sni ?? d.host ?? '') && !claimed.has(d));
  const deadline = Date.now() + timeoutMs;
  while (match().length < want && Date.now() < deadline && !ctx.sb.destroyed) await sleep(20);
  const found = match();
  for (const d of found) claimed.add(d);
  return found;
}

const claimed = new WeakSet<DecisionEvent>();

interface Judgement {
  ok: boolean;
  /** The outcome, short: `200 "hello from allowed.test"`, `reset`. */
  text: string;
  note?: string;
  /** A conclusion line under the decisions. */
  after?: string;
  problems: string[];
}

function judge(ctx: StepContext, step: Step, transfers: Transfer[], decisions: DecisionEvent[]): Judgement {
  const problems: string[] = [];
  const t = transfers[0]!;
  const host = new URL(t.url).hostname;
  const got = (x: Transfer) => x.outcome === 'ok' ? `${x.status}` : `${x.outcome} (${x.error})`;
  const short = (x: Transfer) => x.outcome === 'ok' ? `${x.status}` : x.outcome === 'reset' ? 'connection reset' : x.outcome;
  const served = (x: Transfer) => x.outcome === 'ok' && x.status === 200 && x.body.startsWith(`hello from ${host}`);
  const verdicts = (v: 'allow' | 'block') => {
    if (decisions.length > 0 && decisions.some((d) => d.verdict !== v)) problems.push(`expected flowgate to ${v}`);
  };
  switch (step.expect) {
    case 'allow': {
      if (!served(t)) problems.push(`expected 200 "hello from ${host}", got ${got(t)}`);
      verdicts('allow');
      return { ok: problems.length === 0 && decisions.length === 1, text: served(t) ? `200 "${t.body.trim()}"` : short(t), problems };
    }
    case 'block': {
      const reached = ctx.originHosts.includes(host);
      if (t.outcome !== 'reset') problems.push(`expected a connection reset, got ${got(t)}`);
      else if (t.ms >= FAST_RESET_MS) problems.push(`the reset took ${fmtMs(t.ms)}, expected under ${FAST_RESET_MS} ms`);
      if (reached) problems.push(`the origin received a request for ${host}`);
      verdicts('block');
      return {
        ok: problems.length === 0 && decisions.length === 1,
        text: short(t),
        note: reached ? undefined : 'the origin never saw it',
        problems,
      };
    }
    case 'slow': {
      const d = decisions[0];
      if (!served(t)) problems.push(`expected 200 "hello from ${host}", got ${got(t)}`);
      else if (t.ms < SLOW_POLICY_MS * 0.8) problems.push(`answered in ${fmtMs(t.ms)}: expected to wait ~${SLOW_POLICY_MS} ms`);
      if (d !== undefined && d.held_ms < SLOW_POLICY_MS * 0.8) problems.push(`held only ${fmtMs(d.held_ms)}`);
      verdicts('allow');
      const ok = problems.length === 0 && decisions.length === 1;
      return {
        ok,
        text: served(t) ? `200 "${t.body.trim()}"` : short(t),
        note: served(t) ? 'waited for the policy' : undefined,
        after: ok ? `paused ${fmtMs(d!.held_ms)} while the policy module thought, then resumed` : undefined,
        problems,
      };
    }
    case 'keepalive': {
      for (const x of transfers) if (!(x.outcome === 'ok' && x.status === 200)) problems.push(`${x.url}: expected 200, got ${got(x)}`);
      const connections = transfers.reduce((a, x) => a + x.connects, 0);
      if (connections !== 1) problems.push(`curl opened ${connections} connections, expected 1`);
      const flows = new Set(decisions.map((d) => d.flow));
      if (decisions.length !== 2) problems.push(`expected 2 decisions, saw ${decisions.length}`);
      else if (flows.size !== 1) problems.push(`the decisions are on ${flows.size} flows, expected one`);
      verdicts('allow');
      const ok = problems.length === 0;
      return {
        ok,
        text: transfers.map(short).join(', ') +
          (connections === 1 ? ', one connection' : ''),
        note: 'keep-alive',
        after: ok ? `two decisions on one flow (${decisions[0]!.flow}): paused and resumed once per request` : undefined,
        problems,
      };
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
