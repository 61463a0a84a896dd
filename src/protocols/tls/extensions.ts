/**
 * Readers for the ClientHello extensions flowgate looks into (server_name, ALPN and the lists
 * behind the fingerprints). Each takes the extension data as a view and answers the values or
 * the reason the data is malformed; none throws.
 */
import { normalizeName } from '../names.js';

/** A value read from an extension, or why its data is malformed (the reason names the field). */
export type ExtensionRead<T> = { ok: true; value: T } | { ok: false; reason: string };

/** What server_name (RFC 6066 section 3) says, before duplicate-extension checks. */
export interface ServerNames {
  /** Raw host_name entries as latin1 strings, in order. */
  hostNames: string[];
  /** Types of entries that are not host_name (0). */
  otherTypes: number[];
}

const NAME_TYPE_HOST_NAME = 0;

function u16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

function latin1(b: Uint8Array): string {
  // Names and protocol ids are short: fromCharCode spares a Buffer object and a native call.
  if (b.length <= 256) return String.fromCharCode.apply(null, b as unknown as number[]);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

/** server_name: a u16-prefixed list of (u8 type, u16-prefixed name) entries filling the data exactly. */
export function readServerName(data: Uint8Array): ExtensionRead<ServerNames> {
  if (data.length < 2) return { ok: false, reason: 'server_name list length truncated' };
  const listLength = u16(data, 0);
  if (listLength !== data.length - 2) {
    return { ok: false, reason: `server_name list length ${listLength} does not match extension length ${data.length}` };
  }
  const value: ServerNames = { hostNames: [], otherTypes: [] };
  let at = 2;
  while (at < data.length) {
    if (at + 3 > data.length) return { ok: false, reason: 'server_name entry header overruns list' };
    const type = data[at]!;
    const length = u16(data, at + 1);
    at += 3;
    if (at + length > data.length) return { ok: false, reason: 'server_name entry length overruns list' };
    if (type === NAME_TYPE_HOST_NAME) value.hostNames.push(latin1(data.subarray(at, at + length)));
    else value.otherTypes.push(type);
    at += length;
  }
  return { ok: true, value };
}

/** The sni, sniError and sniAmbiguous fields of a hello, from every server_name extension it carries. */
export interface SniVerdict {
  sni: string | null;
  sniError?: string;
  sniAmbiguous?: string;
}

/**
 * Decides the name a server would see. Several names, a duplicate extension, an empty name or an
 * entry of unknown type is ambiguous (servers disagree or reject); sni is then the first
 * host_name still, for logs. A malformed name gives sni null and sniError.
 */
export function decideSni(lists: readonly ServerNames[]): SniVerdict {
  if (lists.length === 0) return { sni: null };
  // One extension, the usual case, needs no merged copies.
  const names = lists.length === 1 ? lists[0]!.hostNames : lists.flatMap((l) => l.hostNames);
  const others = lists.length === 1 ? lists[0]!.otherTypes : lists.flatMap((l) => l.otherTypes);
  let ambiguous: string | undefined;
  if (lists.length > 1) ambiguous = `${lists.length} server_name extensions`;
  else if (names.length > 1) ambiguous = `${names.length} host_name entries`;
  else if (others.length > 0) ambiguous = `server_name entry of unknown type ${others[0]}`;
  else if (names.length === 0) ambiguous = 'empty server_name list';
  else if (names[0]!.length === 0) ambiguous = 'empty host_name';
  const verdict: SniVerdict = { sni: null };
  const first = names.find((n) => n.length > 0);
  if (first !== undefined) {
    const normalized = normalizeName(first);
    if (normalized.ok) verdict.sni = normalized.name;
    else verdict.sniError = normalized.reason;
  }
  if (ambiguous !== undefined) verdict.sniAmbiguous = ambiguous;
  return verdict;
}

/** application_layer_protocol_negotiation (RFC 7301): a u16-prefixed list of u8-prefixed names. */
export function readAlpn(data: Uint8Array): ExtensionRead<string[]> {
  if (data.length < 2) return { ok: false, reason: 'ALPN list length truncated' };
  const listLength = u16(data, 0);
  if (listLength !== data.length - 2) {
    return { ok: false, reason: `ALPN list length ${listLength} does not match extension length ${data.length}` };
  }
  const names: string[] = [];
  let at = 2;
  while (at < data.length) {
    const length = data[at]!;
    at += 1;
    if (at + length > data.length) return { ok: false, reason: 'ALPN protocol name length overruns list' };
    names.push(latin1(data.subarray(at, at + length)));
    at += length;
  }
  return { ok: true, value: names };
}

/**
 * A list of u16 values behind a length prefix of `prefixBytes` (1 or 2) that fills the data
 * exactly: supported_groups, signature_algorithms, supported_versions.
 */
export function readU16List(data: Uint8Array, prefixBytes: 1 | 2, field: string): ExtensionRead<number[]> {
  if (data.length < prefixBytes) return { ok: false, reason: `${field} length truncated` };
  const length = prefixBytes === 1 ? data[0]! : u16(data, 0);
  if (length !== data.length - prefixBytes) {
    return { ok: false, reason: `${field} length ${length} does not match extension length ${data.length}` };
  }
  if (length % 2 !== 0) return { ok: false, reason: `${field} length ${length} is odd` };
  const values: number[] = [];
  for (let at = prefixBytes; at < data.length; at += 2) values.push(u16(data, at));
  return { ok: true, value: values };
}

/** ec_point_formats (RFC 8422): a u8-prefixed list of u8 values filling the data exactly. */
export function readU8List(data: Uint8Array, field: string): ExtensionRead<number[]> {
  if (data.length < 1) return { ok: false, reason: `${field} length truncated` };
  if (data[0] !== data.length - 1) {
    return { ok: false, reason: `${field} length ${data[0]} does not match extension length ${data.length}` };
  }
  return { ok: true, value: Array.from(data.subarray(1)) };
}

/** key_share (RFC 8446 section 4.2.8): the groups of a u16-prefixed list of (u16 group, u16-prefixed key). */
export function readKeyShareGroups(data: Uint8Array): ExtensionRead<number[]> {
  if (data.length < 2) return { ok: false, reason: 'key_share client_shares length truncated' };
  const listLength = u16(data, 0);
  if (listLength !== data.length - 2) {
    return { ok: false, reason: `key_share client_shares length ${listLength} does not match extension length ${data.length}` };
  }
  const groups: number[] = [];
  let at = 2;
  while (at < data.length) {
    if (at + 4 > data.length) return { ok: false, reason: 'key_share entry header overruns client_shares' };
    groups.push(u16(data, at));
    const keyLength = u16(data, at + 2);
    at += 4;
    if (at + keyLength > data.length) return { ok: false, reason: 'key_share key_exchange length overruns client_shares' };
    at += keyLength;
  }
  return { ok: true, value: groups };
}
