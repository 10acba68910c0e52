// Shared by the model-folder and safetensors tests: temp folders and checks of
// ModelLoadError contents.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ModelLoadError } from '../../../engine/model/errors.ts';

// Runs `fn` in a fresh folder under the OS temp folder, removed afterwards.
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lora-studio-model-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface ExpectedLoadError {
  file: string; // basename the error's `file` must end with, and its message must name
  field?: string; // the error's `field`, which its message must also name
  includes?: (string | RegExp)[]; // more text the message must contain
}

// Awaits `promise`, asserts it rejects with a ModelLoadError naming the file
// (and field), and returns the error.
export async function expectLoadError(promise: Promise<unknown>, expected: ExpectedLoadError): Promise<ModelLoadError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, 'expected a ModelLoadError, but the call succeeded');
  assert.ok(caught instanceof ModelLoadError, `expected a ModelLoadError, got ${String(caught)}`);
  const err = caught;
  assert.ok(err.file !== undefined && path.basename(err.file) === expected.file, `error file ${err.file} is not ${expected.file}`);
  assert.ok(err.message.includes(expected.file), `message does not name ${expected.file}: ${err.message}`);
  if (expected.field !== undefined) {
    assert.equal(err.field, expected.field);
    assert.ok(err.message.includes(expected.field), `message does not name ${expected.field}: ${err.message}`);
  }
  for (const part of expected.includes ?? []) {
    if (typeof part === 'string') assert.ok(err.message.includes(part), `message lacks "${part}": ${err.message}`);
    else assert.match(err.message, part);
  }
  return err;
}
