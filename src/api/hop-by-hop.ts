/**
 * Headers that describe one connection, not the message (RFC 9110 §7.6.1):
 * a proxy removes them, and every header the Connection header names, in
 * both directions. `proxy-connection` is the obsolete form of `connection`.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name.toLowerCase());
}

/**
 * `rawHeaders` (names and values in turn) without the hop-by-hop headers,
 * those named in Connection, and any in `drop` (lower case), appended to
 * `kept` (default: a new list).
 */
export function endToEndHeaders(
  rawHeaders: string[],
  drop: ReadonlySet<string>,
  kept: string[] = [],
): string[] {
  // Made only when a Connection header names some (rare): most messages cost no Set.
  let named: Set<string> | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() !== 'connection') continue;
    named ??= new Set();
    for (const token of rawHeaders[i + 1].split(',')) named.add(token.trim().toLowerCase());
  }
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (HOP_BY_HOP.has(name) || named?.has(name) || drop.has(name)) continue;
    kept.push(rawHeaders[i], rawHeaders[i + 1]);
  }
  return kept;
}
