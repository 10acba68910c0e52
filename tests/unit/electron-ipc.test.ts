// An api call as the main process answers it over IPC: method and input
// checked against the contract, errors returned as values with their kind.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ApiHandlers } from '../../main/api/contract.ts';
import { UserError } from '../../engine/model/errors.ts';
import { dispatchApiCall, isApiMethod } from '../../electron/ipc.ts';

const renamed: unknown[] = [];
const handlers = {
  'shelf.rename': (input: { id: string; name: string }) => {
    renamed.push(input);
    if (input.id === 'missing') throw new UserError(`No adapter with id ${input.id}. Refresh the shelf.`);
    if (input.id === 'bug') throw new TypeError('x is undefined');
    return { id: input.id, name: input.name };
  },
} as unknown as ApiHandlers;

test('only the contract\'s methods are callable', async () => {
  assert.equal(isApiMethod('shelf.rename'), true);
  assert.equal(isApiMethod('toString'), false);
  assert.equal(isApiMethod('__proto__'), false);
  assert.equal(isApiMethod(7), false);
  const reply = await dispatchApiCall(handlers, 'fs.readFile', {});
  assert.equal(reply.ok, false);
  assert.equal(!reply.ok && reply.error.kind, 'invalid');
  assert.match(!reply.ok ? reply.error.message : '', /no api call named "fs\.readFile"/);
});

test('input is checked by the method\'s schema before the handler runs, naming the field', async () => {
  renamed.length = 0;
  const reply = await dispatchApiCall(handlers, 'shelf.rename', { id: 'a1', name: '   ' });
  assert.equal(reply.ok, false);
  if (!reply.ok) {
    assert.equal(reply.error.kind, 'invalid');
    assert.equal(reply.error.field, 'name');
  }
  assert.deepEqual(renamed, [], 'the handler did not run');
});

test('the handler\'s output comes back as the value, trimmed input as parsed', async () => {
  const reply = await dispatchApiCall(handlers, 'shelf.rename', { id: 'a1', name: '  My adapter ' });
  assert.deepEqual(reply, { ok: true, value: { id: 'a1', name: 'My adapter' } });
});

test('a user error keeps its kind and message; anything else is internal', async () => {
  const user = await dispatchApiCall(handlers, 'shelf.rename', { id: 'missing', name: 'n' });
  assert.deepEqual(user, { ok: false, error: { kind: 'user', message: 'No adapter with id missing. Refresh the shelf.' } });
  const internal = await dispatchApiCall(handlers, 'shelf.rename', { id: 'bug', name: 'n' });
  assert.deepEqual(internal, { ok: false, error: { kind: 'internal', message: 'x is undefined' } });
});
