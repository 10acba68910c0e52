// One api call over IPC, without Electron: the method must be one of the
// contract's, the input is checked by its schema, and the answer is an
// ApiReply (errors as values, so their kind and field survive IPC, which would
// keep only an Error's message).
import { API, type ApiError, type ApiHandlers, type ApiMethod } from '../main/api/contract.ts';
import { UserError } from '../engine/model/errors.ts';
import type { ApiReply } from './bridge.ts';

export function isApiMethod(method: unknown): method is ApiMethod {
  return typeof method === 'string' && Object.hasOwn(API, method);
}

export function toApiError(err: unknown): ApiError {
  if (err instanceof UserError) return { kind: 'user', message: err.message };
  const message = err instanceof Error ? err.message : String(err);
  return { kind: 'internal', message: message || 'Something went wrong inside the app.' };
}

export async function dispatchApiCall(handlers: ApiHandlers, method: unknown, input: unknown): Promise<ApiReply> {
  if (!isApiMethod(method)) {
    return { ok: false, error: { kind: 'invalid', message: `There is no api call named ${JSON.stringify(method)}.` } };
  }
  const parsed = API[method].input.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.map(String).join('.') ?? '';
    return {
      ok: false,
      error: { kind: 'invalid', message: `${method}: ${field ? `${field}: ` : ''}${issue?.message ?? 'bad input'}`, ...(field ? { field } : {}) },
    };
  }
  try {
    const handler = handlers[method] as (input: unknown) => unknown;
    return { ok: true, value: await handler(parsed.data) };
  } catch (err) {
    return { ok: false, error: toApiError(err) };
  }
}
