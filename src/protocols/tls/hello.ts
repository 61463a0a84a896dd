/**
 * Parses a complete ClientHello body (the handshake message without its 4-byte header, RFC 8446
 * section 4.1.2) into a ClientHello. Used by the record-layer reader; usable as is for a hello
 * taken from QUIC CRYPTO frames.
 */
import {
  decideSni,
  readAlpn,
  readKeyShareGroups,
  readServerName,
  readU16List,
  readU8List,
  type ExtensionRead,
  type ServerNames,
} from './extensions.js';
import { fingerprintsOf, ja3Hash, ja3String, ja4, type Fingerprints } from './fingerprints.js';
import { Ext, type ClientHello } from './types.js';

/** Record-layer facts about the hello that its body does not hold. */
export interface HelloFraming {
  /** Version field of the first record carrying the hello. */
  recordVersion: number;
  /** Records that carried bytes of the hello. */
  recordCount: number;
  /** Transport letter of JA4: 't' for TCP (default), 'q' for QUIC. */
  transport?: 't' | 'q';
}

/** A parsed hello, or why the body is malformed (the reason names the field). */
export type HelloParse = { ok: true; hello: ClientHello } | { ok: false; reason: string };

/** Largest legacy_session_id, in bytes (RFC 8446 section 4.1.2). */
const MAX_SESSION_ID = 32;
const RANDOM_LENGTH = 32;

/** Parses the body of a ClientHello handshake message; never throws. */
export function parseClientHelloBody(body: Uint8Array, framing: HelloFraming): HelloParse {
  const fail = (reason: string): HelloParse => ({ ok: false, reason });
  const u16 = (at: number): number => (body[at]! << 8) | body[at + 1]!;
  let at = 0;

  if (body.length < 2) return fail('legacy_version truncated');
  const legacyVersion = u16(0);
  at = 2;
  if (at + RANDOM_LENGTH > body.length) return fail('random truncated');
  at += RANDOM_LENGTH;

  if (at + 1 > body.length) return fail('session id length truncated');
  const sessionIdLength = body[at]!;
  at += 1;
  if (sessionIdLength > MAX_SESSION_ID) return fail(`session id length ${sessionIdLength} exceeds ${MAX_SESSION_ID}`);
  if (at + sessionIdLength > body.length) return fail('session id length overruns hello');
  at += sessionIdLength;

  if (at + 2 > body.length) return fail('cipher suites length truncated');
  const suitesLength = u16(at);
  at += 2;
  if (suitesLength % 2 !== 0) return fail(`cipher suites length ${suitesLength} is odd`);
  if (at + suitesLength > body.length) return fail('cipher suites length overruns hello');
  const cipherSuites: number[] = [];
  for (let i = at; i < at + suitesLength; i += 2) cipherSuites.push(u16(i));
  at += suitesLength;

  if (at + 1 > body.length) return fail('compression methods length truncated');
  const compressionLength = body[at]!;
  at += 1;
  if (at + compressionLength > body.length) return fail('compression methods length overruns hello');
  const compressionMethods = Array.from(body.subarray(at, at + compressionLength));
  at += compressionLength;

  const hello = new ParsedHello(legacyVersion, cipherSuites, compressionMethods, sessionIdLength, body.length, framing);

  // Hellos of SSL 3.0 / early TLS may end here; otherwise the extensions block fills the rest exactly.
  if (at < body.length) {
    if (at + 2 > body.length) return fail('extensions length truncated');
    const extensionsLength = u16(at);
    at += 2;
    if (at + extensionsLength > body.length) return fail('extensions length overruns hello');
    if (at + extensionsLength < body.length) {
      return fail(`${body.length - at - extensionsLength} trailing bytes after extensions`);
    }
    const problem = readExtensions(body.subarray(at), hello);
    if (problem !== undefined) return fail(problem);
  }

  return { ok: true, hello };
}

/**
 * A parsed hello. Its fingerprints are computed when first read, not while parsing: most
 * connections are decided on the name alone, and their verdict should not wait for two hashes
 * and a sort (a quarter of a hello's JavaScript on the gateway, bench/RESULTS.md); the event
 * that reports them reads them after the verdict left.
 */
class ParsedHello implements ClientHello {
  sni: string | null = null;
  declare sniError?: string;
  declare sniAmbiguous?: string;
  alpn: string[] | null = null;
  supportedVersions: number[] = [];
  extensions: number[] = [];
  duplicateExtensions: number[] = [];
  groups: number[] = [];
  keyShareGroups: number[] = [];
  ecPointFormats: number[] = [];
  signatureAlgorithms: number[] = [];
  ech = false;
  psk = false;
  earlyData = false;
  paddingLength: number | null = null;
  recordVersion: number;
  recordCount: number;
  #transport: 't' | 'q';
  #prints: Fingerprints | undefined = undefined;

  constructor(readonly legacyVersion: number, readonly cipherSuites: number[], readonly compressionMethods: number[],
    readonly sessionIdLength: number, readonly handshakeLength: number, framing: HelloFraming) {
    this.recordVersion = framing.recordVersion;
    this.recordCount = framing.recordCount;
    this.#transport = framing.transport ?? 't';
  }

  get ja3(): string {
    const prints = this.#fingerprints();
    return (prints.ja3 ??= ja3String(this));
  }

  get ja3Hash(): string {
    const prints = this.#fingerprints();
    return (prints.ja3Hash ??= ja3Hash(this.ja3));
  }

  get ja4(): string {
    const prints = this.#fingerprints();
    return (prints.ja4 ??= ja4(this, this.#transport));
  }

  /** Shared with earlier hellos of the same fields; looked up once the hello is complete. */
  #fingerprints(): Fingerprints {
    return (this.#prints ??= fingerprintsOf(this, this.#transport));
  }

  /** Every field, the fingerprints included (they are getters). */
  toJSON(): ClientHello {
    return { ...this, ja3: this.ja3, ja3Hash: this.ja3Hash, ja4: this.ja4 };
  }
}

/** Walks the extensions block into hello; answers the reason when something is malformed. */
function readExtensions(block: Uint8Array, hello: ClientHello): string | undefined {
  const seen = new Set<number>();
  const serverNames: ServerNames[] = [];
  let at = 0;
  while (at < block.length) {
    if (at + 4 > block.length) return 'extension header overruns extensions block';
    const type = (block[at]! << 8) | block[at + 1]!;
    const length = (block[at + 2]! << 8) | block[at + 3]!;
    at += 4;
    if (at + length > block.length) return `extension 0x${type.toString(16).padStart(4, '0')} length overruns extensions block`;
    const data = block.subarray(at, at + length);
    at += length;

    hello.extensions.push(type);
    const repeated = seen.has(type);
    if (repeated && !hello.duplicateExtensions.includes(type)) hello.duplicateExtensions.push(type);
    seen.add(type);

    if (type === Ext.serverName) {
      const read = readServerName(data);
      if (!read.ok) return read.reason;
      serverNames.push(read.value);
      continue;
    }
    // For the other extensions the first copy counts; a repeat is only reported.
    if (repeated) continue;
    const problem = readKnownExtension(type, data, hello);
    if (problem !== undefined) return problem;
  }
  Object.assign(hello, decideSni(serverNames));
  return undefined;
}

function readKnownExtension(type: number, data: Uint8Array, hello: ClientHello): string | undefined {
  const take = <T>(read: ExtensionRead<T>, store: (value: T) => void): string | undefined => {
    if (!read.ok) return read.reason;
    store(read.value);
    return undefined;
  };
  switch (type) {
    case Ext.alpn:
      return take(readAlpn(data), (v) => (hello.alpn = v));
    case Ext.supportedVersions:
      return take(readU16List(data, 1, 'supported_versions'), (v) => (hello.supportedVersions = v));
    case Ext.supportedGroups:
      return take(readU16List(data, 2, 'supported_groups'), (v) => (hello.groups = v));
    case Ext.signatureAlgorithms:
      return take(readU16List(data, 2, 'signature_algorithms'), (v) => (hello.signatureAlgorithms = v));
    case Ext.ecPointFormats:
      return take(readU8List(data, 'ec_point_formats'), (v) => (hello.ecPointFormats = v));
    case Ext.keyShare:
      return take(readKeyShareGroups(data), (v) => (hello.keyShareGroups = v));
    case Ext.encryptedClientHello:
      hello.ech = true;
      return undefined;
    case Ext.padding:
      hello.paddingLength = data.length;
      return undefined;
    case Ext.preSharedKey:
      hello.psk = true;
      return undefined;
    case Ext.earlyData:
      hello.earlyData = true;
      return undefined;
    default:
      return undefined;
  }
}
