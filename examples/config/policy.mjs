// Example decision module for examples/config/module.yaml. flowgate calls decide(info) for
// each flow or HTTP request no rule matched; info has the decision event's fields (flow, src,
// sport, dst, dport, app, sni, alpn, ja4, ech, host, method, path, ...). Return
// {verdict: 'allow' | 'block', reason: 'short text'}; the event shows reason "module:TEXT".
// Throwing, rejecting or returning anything else gives the configured on_error verdict.

const OFF_HOURS = { from: 22, to: 6 };

export async function decide(info) {
  const name = info.sni ?? info.host ?? null;
  if (name === null) return { verdict: 'block', reason: 'no name' };
  const hour = new Date().getHours();
  const offHours = hour >= OFF_HOURS.from || hour < OFF_HOURS.to;
  if (offHours && name.endsWith('.games.test')) return { verdict: 'block', reason: 'off hours' };
  return { verdict: 'allow', reason: 'ok' };
}
