/**
 * Reading the fields of a JSON request body, each refusal a BAD_REQUEST that names the field and the call.
 */
import { ApiError } from './errors.js';

export function objectBody(body: unknown, what: string): Record<string, unknown> {
  if (body === undefined) return {};
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ApiError('BAD_REQUEST', `${what}: the body must be a JSON object`);
  return body as Record<string, unknown>;
}

export function stringField(o: Record<string, unknown>, key: string, what: string, required: true): string;
export function stringField(o: Record<string, unknown>, key: string, what: string, required?: false): string | undefined;
export function stringField(o: Record<string, unknown>, key: string, what: string, required = false): string | undefined {
  const v = o[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string') throw new ApiError('BAD_REQUEST', `${what}: "${key}" must be a string, got ${JSON.stringify(v)}`);
  return v;
}

/** A size in bytes: a non-negative safe integer (the CLI turns `10G` into bytes before it asks). */
export function sizeField(o: Record<string, unknown>, key: string, what: string, required: boolean): number | undefined {
  const v = o[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ApiError('BAD_REQUEST', `${what}: "${key}" must be a whole number of bytes, got ${JSON.stringify(v)}`);
  return v;
}

export function boolField(o: Record<string, unknown>, key: string, what: string, required: boolean): boolean | undefined {
  const v = o[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'boolean') throw new ApiError('BAD_REQUEST', `${what}: "${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}
