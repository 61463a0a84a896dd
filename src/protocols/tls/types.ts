/**
 * Shapes shared by the TLS ClientHello reader, the body parser and the fingerprints: the parsed
 * hello, the reader's result, its options, and the TLS code points flowgate names.
 */

/** Everything flowgate reads from one ClientHello. Plain data: no views into input buffers. */
export interface ClientHello {
  /** The host_name from server_name, normalised (lowercase, no trailing dot); null when absent or unusable. */
  sni: string | null;
  /** Why the host_name could not be used as a name (non-ASCII, bad label, too long); sni is then null. */
  sniError?: string;
  /** Why the name is ambiguous (several names, duplicate extension, empty name, unknown name type). */
  sniAmbiguous?: string;
  /** ALPN protocol names in offered order, bytes as latin1 (GREASE values kept); null without ALPN. */
  alpn: string[] | null;
  /** legacy_version of the hello (0x0303 for TLS 1.2 and 1.3). */
  legacyVersion: number;
  /** supported_versions in offered order (GREASE kept); empty when the extension is absent. */
  supportedVersions: number[];
  /** Cipher suites in offered order (GREASE and SCSVs kept). */
  cipherSuites: number[];
  /** Compression methods in offered order. */
  compressionMethods: number[];
  /** Length of the legacy session id, in bytes (0..32). */
  sessionIdLength: number;
  /** Extension types in the order sent (GREASE and duplicates kept). */
  extensions: number[];
  /** Extension types sent more than once, each listed once, in order of the first repeat. */
  duplicateExtensions: number[];
  /** supported_groups in offered order (GREASE kept). */
  groups: number[];
  /** Groups of the key_share entries, in order (GREASE kept). */
  keyShareGroups: number[];
  /** ec_point_formats in offered order. */
  ecPointFormats: number[];
  /** signature_algorithms in offered order (GREASE kept). */
  signatureAlgorithms: number[];
  /** The encrypted_client_hello extension (0xfe0d) is present: sni is then the outer, public name. */
  ech: boolean;
  /** pre_shared_key (41) is present. */
  psk: boolean;
  /** early_data (42) is present: 0-RTT application data may follow the hello. */
  earlyData: boolean;
  /** Length of the padding extension (21) data in bytes; null when absent. */
  paddingLength: number | null;
  /** Version field of the first record that carried bytes of this hello (any value is accepted). */
  recordVersion: number;
  /** Number of TLS records that carried bytes of this hello. */
  recordCount: number;
  /** Length of the hello body from the handshake header, in bytes. */
  handshakeLength: number;
  /** JA3 full string: version,ciphers,extensions,groups,point formats (GREASE removed). Computed when first read. */
  readonly ja3: string;
  /** MD5 of ja3, lowercase hex. Computed when first read. */
  readonly ja3Hash: string;
  /** FoxIO JA4 fingerprint, e.g. t13d1516h2_8daaf6152771_e5627efa2ab1. Computed when first read. */
  readonly ja4: string;
}

/** What ClientHelloReader.feed answers; invalid and notTls are final (see the reader's lifecycle). */
export type TlsResult =
  | { kind: 'needMore' }
  /** consumed: stream offset (bytes since the reader started) of the end of the record holding the last hello byte. */
  | { kind: 'done'; hello: ClientHello; consumed: number }
  | { kind: 'invalid'; reason: string }
  /** The first bytes are not a TLS record: let the caller try HTTP or treat the flow as unknown. */
  | { kind: 'notTls' };

/** Limits of ClientHelloReader. */
export interface ClientHelloReaderOptions {
  /** Largest ClientHello body accepted, in bytes; a longer declared handshake length is invalid ('hello too large'). Default 65536. */
  maxHelloBytes?: number;
}

/** Default of ClientHelloReaderOptions.maxHelloBytes, in bytes. */
export const DEFAULT_MAX_HELLO_BYTES = 65536;

/** Largest TLSCiphertext fragment a receiver accepts, in bytes (RFC 8446 section 5.2: 2^14 + 256; RFC 5246 allows 2^14 + 2048). */
export const MAX_RECORD_LENGTH = 16384 + 2048;

/** TLS record content types (RFC 8446 section 5.1, RFC 6520). */
export const ContentType = {
  changeCipherSpec: 20,
  alert: 21,
  handshake: 22,
  applicationData: 23,
  heartbeat: 24,
} as const;

/** Handshake message type of a ClientHello (RFC 8446 section 4). */
export const HANDSHAKE_CLIENT_HELLO = 1;

/** Extension code points flowgate reads (IANA TLS ExtensionType Values). */
export const Ext = {
  serverName: 0,
  supportedGroups: 10,
  ecPointFormats: 11,
  signatureAlgorithms: 13,
  alpn: 16,
  padding: 21,
  preSharedKey: 41,
  earlyData: 42,
  supportedVersions: 43,
  keyShare: 51,
  encryptedClientHello: 0xfe0d,
} as const;

/** True for the 16 reserved GREASE values 0x0a0a, 0x1a1a, ... 0xfafa (RFC 8701). */
export function isGrease(value: number): boolean {
  return (value & 0x0f0f) === 0x0a0a && value >> 8 === (value & 0xff);
}

/** True for the GREASE ALPN identifiers: two equal bytes 0x?a (RFC 8701 section 2). */
export function isGreaseAlpn(name: string): boolean {
  return name.length === 2 && name.charCodeAt(0) === name.charCodeAt(1) && (name.charCodeAt(0) & 0x0f) === 0x0a;
}
