/**
 * What the CLI prints for people (`--json` prints the API's answers instead): sizes like `ls -lh` (binary
 * units: 4.0K, 64M, 20G), times, and aligned tables.
 */

/** 0, 512, 4.0K, 64M, 1.5G, 20G (powers of 1024, one decimal under 10). */
export function humanBytes(n: number): string {
  const units = ['K', 'M', 'G', 'T', 'P', 'E'];
  if (n < 1024) return String(n);
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? (Math.round(v * 10) / 10).toFixed(1) : Math.round(v)}${units[u]}`;
}

export function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Columns padded to their widest cell; numbers-looking columns right-aligned. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const right = head.map((_, i) => rows.length > 0 && rows.every((r) => /^[\d.]+[KMGTPE]?$|^-$/.test(r[i] ?? '')));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

/** rwxr-xr-x from mode bits, with a leading d or - . */
export function modeString(mode: number, dir: boolean): string {
  const bits = 'rwxrwxrwx';
  let s = dir ? 'd' : '-';
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? bits[i] : '-';
  return s;
}
