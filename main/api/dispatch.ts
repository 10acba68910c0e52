// The boundary every call crosses, whichever transport carried it: the method
// name is checked, the input is parsed with the contract's schema (a malformed
// call becomes an 'invalid' error naming the first bad field's path), the
// handler runs, and its failure is sorted: a UserError is the user's to fix
// ('user', its message shown as is), anything else is a bug ('internal',
// logged with its stack, shown as a short message). With checkOutputs on
// (the tests), every output is parsed with its schema too, so a handler that
// drifts from the contract fails loudly.
import { z } from 'zod';
import { UserError } from '../../engine/model/errors.ts';
import { API, type ApiError, type ApiHandlers, type ApiMethod } from './contract.ts';

export type DispatchResult = { ok: true; output: unknown } | { ok: false; error: ApiError };

export interface DispatchOptions {
  /** Parse every output with its schema; a mismatch is an 'internal' error. */
  checkOutputs?: boolean;
  /** Where internal errors go (default console.error). */
  log?: (message: string, error: unknown) => void;
}

export type Dispatch = (method: string, input: unknown) => Promise<DispatchResult>;

export function isApiMethod(name: string): name is ApiMethod {
  return Object.hasOwn(API, name);
}

/** "config.rank" for ['config', 'rank']; "(input)" for the input as a whole. */
function fieldPath(issue: z.core.$ZodIssue | undefined): string {
  return issue && issue.path.length ? issue.path.map(String).join('.') : '(input)';
}

/** The 'invalid' error of a failed parse: the first issue, its field and zod's message. */
export function invalidInput(method: string, error: z.ZodError): ApiError {
  const issue = error.issues[0];
  const field = fieldPath(issue);
  return { kind: 'invalid', field, message: `${method}: ${field} ${issue ? issue.message.toLowerCase() : 'is not valid'}.` };
}

export function errorOf(err: unknown, log: NonNullable<DispatchOptions['log']>, method: string): ApiError {
  if (err instanceof UserError) return { kind: 'user', message: err.message };
  log(`${method} failed`, err);
  const message = err instanceof Error ? err.message : String(err);
  return { kind: 'internal', message: `Something went wrong in LoRA Studio (${method}): ${message}. The details are in the log.` };
}

export function createDispatch(handlers: ApiHandlers, opts: DispatchOptions = {}): Dispatch {
  const log = opts.log ?? ((message, error) => console.error(message, error));
  return async (method, input) => {
    if (!isApiMethod(method)) return { ok: false, error: { kind: 'invalid', message: `There is no call named "${method}".` } };
    const spec = API[method];
    const parsed = spec.input.safeParse(input ?? {});
    if (!parsed.success) return { ok: false, error: invalidInput(method, parsed.error) };
    let output: unknown;
    try {
      const handler = handlers[method] as (input: unknown) => unknown;
      output = await handler(parsed.data);
    } catch (err) {
      return { ok: false, error: errorOf(err, log, method) };
    }
    if (opts.checkOutputs) {
      const checked = spec.output.safeParse(output);
      if (!checked.success) {
        const issue = checked.error.issues[0];
        const error = new Error(`output does not match the contract at ${fieldPath(issue)}: ${issue?.message ?? 'invalid'}`);
        return { ok: false, error: errorOf(error, log, method) };
      }
      output = checked.data;
    }
    return { ok: true, output };
  };
}
