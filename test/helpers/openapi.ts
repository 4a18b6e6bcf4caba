/**
 * docs/api.yaml for tests: its operations, and a small validator of answers against its schemas (the
 * subset the document uses: type, required, properties, items, enum, nullable, minimum/maximum, $ref).
 * Objects may not carry properties the schema does not name: an answer that grew a field needs the doc too.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';

export const API_DOC_PATH = fileURLToPath(new URL('../../../docs/api.yaml', import.meta.url));

type Schema = Record<string, any>;
export interface ApiDoc {
  paths: Record<string, Record<string, any>>;
  components: { schemas: Record<string, Schema>; responses: Record<string, any>; parameters: Record<string, any> };
}

export function loadApiDoc(): ApiDoc {
  return yaml.load(readFileSync(API_DOC_PATH, 'utf8')) as ApiDoc;
}

const METHODS = ['get', 'post', 'patch', 'delete', 'put'];

/** `GET /v1/status`, … for every operation of the document. */
export function docOperations(doc: ApiDoc): string[] {
  const out: string[] = [];
  for (const [p, item] of Object.entries(doc.paths)) for (const m of Object.keys(item)) if (METHODS.includes(m)) out.push(`${m.toUpperCase()} ${p}`);
  return out.sort();
}

function deref(doc: ApiDoc, x: any): any {
  while (x && typeof x === 'object' && typeof x.$ref === 'string') {
    const parts = (x.$ref as string).replace(/^#\//, '').split('/');
    x = parts.reduce((o: any, k) => o[k], doc);
  }
  return x;
}

/** Problems of `value` against `schema` (empty: valid), each with its JSON path. */
export function validate(doc: ApiDoc, schema: Schema, value: unknown, at = '$'): string[] {
  const s = deref(doc, schema);
  if (value === null) return s.nullable ? [] : [`${at}: null but not nullable`];
  const errs: string[] = [];
  const type = s.type ?? (s.properties ? 'object' : undefined);
  if (type === 'object') {
    if (typeof value !== 'object' || Array.isArray(value)) return [`${at}: expected an object`];
    const v = value as Record<string, unknown>;
    for (const r of s.required ?? []) if (!(r in v)) errs.push(`${at}: missing ${r}`);
    for (const [k, val] of Object.entries(v)) {
      const ps = s.properties?.[k];
      if (!ps) errs.push(`${at}.${k}: not in the document`);
      else errs.push(...validate(doc, ps, val, `${at}.${k}`));
    }
  } else if (type === 'array') {
    if (!Array.isArray(value)) return [`${at}: expected an array`];
    value.forEach((x, i) => errs.push(...validate(doc, s.items, x, `${at}[${i}]`)));
  } else if (type === 'integer') {
    if (!Number.isInteger(value)) errs.push(`${at}: expected an integer, got ${JSON.stringify(value)}`);
  } else if (type === 'string') {
    if (typeof value !== 'string') errs.push(`${at}: expected a string, got ${JSON.stringify(value)}`);
  } else if (type === 'boolean') {
    if (typeof value !== 'boolean') errs.push(`${at}: expected a boolean`);
  }
  if (s.enum && !s.enum.includes(value)) errs.push(`${at}: ${JSON.stringify(value)} not one of ${s.enum.join(', ')}`);
  if (typeof value === 'number' && s.minimum !== undefined && value < s.minimum) errs.push(`${at}: under ${s.minimum}`);
  if (typeof value === 'number' && s.maximum !== undefined && value > s.maximum) errs.push(`${at}: over ${s.maximum}`);
  return errs;
}

/** The document's response for an operation and status (its `default` when the status is not listed), or undefined. */
export function docResponse(doc: ApiDoc, method: string, pattern: string, status: number): any {
  const op = doc.paths[pattern]?.[method.toLowerCase()];
  if (!op) return undefined;
  const r = op.responses[String(status)] ?? op.responses.default;
  return r === undefined ? undefined : deref(doc, r);
}
