/**
 * Prometheus metrics (config `metrics: "127.0.0.1:9475"`), served at /metrics with prom-client.
 * Values are read from the daemon's status report at scrape time, so the packet path only bumps
 * plain counters and one code path serves single-queue and worker-pool daemons alike.
 */
import http from 'node:http';
import client from 'prom-client';
import { FlowgateError } from '../errors.js';
import { LATENCY_BUCKETS_MS } from '../filter/stats.js';

/** The status fields the metrics read (see report.ts). */
export interface MetricsSource {
  (): Promise<Record<string, unknown>> | Record<string, unknown>;
}

/** Builds the registry and the refresh to run before each scrape; exported for tests. */
export function createRegistry(source: MetricsSource): { registry: client.Registry; refresh(): Promise<void> } {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'flowgate_process_' });
  let last: Record<string, unknown> = {};
  const num = (k: string) => (typeof last[k] === 'number' ? (last[k] as number) : 0);
  const map = (k: string) => (last[k] ?? {}) as Record<string, number>;
  // One status read per scrape, before the collectors (which prom-client runs concurrently) read it.
  const refresh = async () => {
    last = await source();
  };
  const counter = (name: string, help: string, key: string) => new client.Gauge({
    name, help, registers: [registry],
    collect() {
      this.set(num(key));
    },
  });
  counter('flowgate_packets_received_total', 'Packets received from the kernel (queued, and handshake copies from NFLOG)', 'received');
  counter('flowgate_verdicts_total', 'Verdicts given (accepted + dropped + repeated; a handshake copy counts as accepted)', 'verdicts');
  counter('flowgate_held_packets', 'Packets held right now', 'held');
  counter('flowgate_held_bytes', 'Payload bytes held right now', 'held_bytes');
  counter('flowgate_paused_flows', 'Flows waiting for an asynchronous decision', 'paused_flows');
  counter('flowgate_inspecting_flows', 'Flows under inspection', 'inspecting_flows');
  counter('flowgate_flows', 'Flows in the table', 'flows');
  counter('flowgate_events_dropped_total', 'Decision events not written (stdout congested or broken)', 'events_dropped');
  new client.Gauge({
    name: 'flowgate_verdicts_by_kind_total', help: 'Verdicts by kind', labelNames: ['kind'], registers: [registry],
    collect() {
      this.set({ kind: 'accept' }, num('accepted'));
      this.set({ kind: 'drop' }, num('dropped'));
      this.set({ kind: 'repeat' }, num('repeated'));
    },
  });
  new client.Gauge({
    name: 'flowgate_decisions_total', help: 'Decisions by verdict and reason kind', labelNames: ['verdict', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(map('by_reason'))) {
        const [verdict, reason] = k.split(':');
        this.set({ verdict: verdict!, reason: reason ?? '' }, v);
      }
    },
  });
  new client.Gauge({
    name: 'flowgate_events_total', help: 'Evasion, limit and lifecycle events (evasion_*, limit_*, midstream, ...)',
    labelNames: ['event'], registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(map('events'))) this.set({ event: k }, v);
    },
  });
  new client.Gauge({
    name: 'flowgate_kernel_queue_total', help: 'Kernel queue counters (received, enobufs, send errors, ...)',
    labelNames: ['counter'], registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(map('kernel'))) if (typeof v === 'number') this.set({ counter: k }, v);
    },
  });
  new client.Gauge({
    name: 'flowgate_kernel_queue_dropped_total', help: 'Packets the kernel dropped: queue full, or user (netlink) drops',
    labelNames: ['why'], registers: [registry],
    collect() {
      this.set({ why: 'queue_full' }, num('kernel_queue_dropped'));
      this.set({ why: 'user' }, num('kernel_user_dropped'));
    },
  });
  // The decision latency histogram, exposed in the Prometheus text format by hand (cumulative buckets).
  const latency = new client.Gauge({
    name: 'flowgate_decision_latency_ms_bucket', help: 'Decision latency histogram (cumulative, ms)',
    labelNames: ['le'], registers: [registry],
    collect() {
      const counts = (last.latency_buckets as number[] | undefined) ?? [];
      let sum = 0;
      LATENCY_BUCKETS_MS.forEach((le, i) => {
        sum += counts[i] ?? 0;
        this.set({ le: String(le) }, sum);
      });
      this.set({ le: '+Inf' }, sum + (counts[LATENCY_BUCKETS_MS.length] ?? 0));
    },
  });
  void latency;
  counter('flowgate_decision_latency_ms_sum', 'Sum of decision latencies, ms', 'latency_sum_ms');
  return { registry, refresh };
}

/** Serves /metrics on `host:port`; resolves once listening. */
export async function serveMetrics(host: string, port: number, source: MetricsSource): Promise<http.Server> {
  const { registry, refresh } = createRegistry(source);
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.statusCode = 404;
      res.end('not found: try /metrics\n');
      return;
    }
    refresh().then(() => registry.metrics()).then((text) => {
      res.setHeader('content-type', registry.contentType);
      res.end(text);
    }, (err: Error) => {
      res.statusCode = 500;
      res.end(`metrics failed: ${err.message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new FlowgateError('ERR_METRICS', `cannot serve metrics on ${host}:${port}: ${err.message}`)));
    server.listen(port, host, () => resolve());
  });
  server.unref();
  return server;
}
