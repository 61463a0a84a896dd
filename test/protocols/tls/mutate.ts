/**
 * Seeded mutation fuzzing of ClientHelloReader, shared by fuzz.test.ts (a quick run in the test
 * suite) and fuzz.ts (the long run). Each input is a fixture stream with 1-4 mutations; it is fed
 * whole, and every `chunkEvery`-th input also in random chunks, which must give the same results.
 */
import { ClientHelloReader, type TlsResult } from '../../../src/protocols/tls/clienthello.js';
import { feedAll, loadStream, prng } from './helpers.js';

/** Fixtures mutated by default: small and large, one and two hellos, with and without SNI. */
export const FUZZ_FIXTURES = ['chrome-34-google', 'hrr', 'wolfssl', 'tls13-ech', 'frag-01', 'tls13-draft28', 'openjdk-25', 'chrome-1250-kyber'];

/** Counts of one fuzz run. */
export interface FuzzReport {
  inputs: number;
  exceptions: number;
  /** Inputs fed in random chunks whose results differed from the whole feed. */
  chunkMismatches: number;
  kinds: Record<TlsResult['kind'], number>;
  /** The first few failures, as hex inputs with the error. */
  failures: { input: string; error: string }[];
}

const INTERESTING16 = [0x0000, 0x0001, 0x00ff, 0x0100, 0x3fff, 0x4000, 0x4800, 0x4801, 0x7fff, 0x8000, 0xfffe, 0xffff];

/** Applies one random mutation. */
function mutateOnce(input: Uint8Array, rand: () => number, donors: readonly Uint8Array[]): Uint8Array {
  const pick = (n: number): number => Math.floor(rand() * n);
  const at = pick(input.length + 1);
  switch (pick(9)) {
    case 0: {
      const out = input.slice();
      if (at < out.length) out[at] = out[at]! ^ (1 << pick(8));
      return out;
    }
    case 1: {
      const out = input.slice();
      if (at < out.length) out[at] = [0, 1, 0x7f, 0x80, 0xff, pick(256)][pick(6)]!;
      return out;
    }
    case 2: {
      // A 16-bit field (most lengths are) set to an interesting value.
      const out = input.slice();
      const v = INTERESTING16[pick(INTERESTING16.length)]!;
      if (at + 1 < out.length) {
        out[at] = v >> 8;
        out[at + 1] = v & 0xff;
      }
      return out;
    }
    case 3: {
      const n = 1 + pick(16);
      const out = new Uint8Array(input.length + n);
      out.set(input.subarray(0, at));
      for (let i = 0; i < n; i++) out[at + i] = pick(256);
      out.set(input.subarray(at), at + n);
      return out;
    }
    case 4: {
      const n = 1 + pick(32);
      return new Uint8Array(Buffer.concat([input.subarray(0, at), input.subarray(at + n)]));
    }
    case 5: {
      const from = pick(input.length + 1);
      const n = pick(64);
      const piece = input.subarray(from, from + n);
      const out = new Uint8Array(input.length + piece.length);
      out.set(input.subarray(0, at));
      out.set(piece, at);
      out.set(input.subarray(at), at + piece.length);
      return out;
    }
    case 6:
      return input.slice(0, at);
    case 7: {
      const donor = donors[pick(donors.length)]!;
      const from = pick(donor.length);
      return new Uint8Array(Buffer.concat([input.subarray(0, at), donor.subarray(from)]));
    }
    default: {
      const out = input.slice();
      if (at + 2 < out.length) {
        const v = pick(0x1000000);
        out[at] = v >> 16;
        out[at + 1] = (v >> 8) & 0xff;
        out[at + 2] = v & 0xff;
      }
      return out;
    }
  }
}

function* randomChunks(input: Uint8Array, rand: () => number): Generator<Uint8Array> {
  for (let at = 0; at < input.length; ) {
    const n = 1 + Math.floor(rand() * (rand() < 0.5 ? 8 : 600));
    yield input.subarray(at, at + n);
    at += n;
  }
}

/** Runs `count` mutated inputs from `seed`; never throws itself. */
export function fuzz(count: number, seed: number, chunkEvery = 8, fixtures = FUZZ_FIXTURES): FuzzReport {
  const rand = prng(seed);
  const seeds = fixtures.map(loadStream);
  const report: FuzzReport = {
    inputs: 0,
    exceptions: 0,
    chunkMismatches: 0,
    kinds: { needMore: 0, done: 0, invalid: 0, notTls: 0 },
    failures: [],
  };
  const reader = new ClientHelloReader();
  for (let i = 0; i < count; i++) {
    let input = seeds[Math.floor(rand() * seeds.length)]!;
    const mutations = 1 + Math.floor(rand() * 4);
    for (let m = 0; m < mutations; m++) input = mutateOnce(input, rand, seeds);
    report.inputs++;
    try {
      reader.reset();
      const whole = feedAll(reader, [input]);
      for (const r of whole) report.kinds[r.kind]++;
      if (i % chunkEvery === 0) {
        reader.reset();
        const chunked = feedAll(reader, randomChunks(input, rand));
        if (JSON.stringify(chunked) !== JSON.stringify(whole)) {
          report.chunkMismatches++;
          if (report.failures.length < 5) {
            report.failures.push({ input: Buffer.from(input).toString('hex'), error: 'chunked feed differs' });
          }
        }
      }
    } catch (error) {
      report.exceptions++;
      if (report.failures.length < 5) {
        report.failures.push({ input: Buffer.from(input).toString('hex'), error: String((error as Error)?.stack ?? error) });
      }
    }
  }
  return report;
}
