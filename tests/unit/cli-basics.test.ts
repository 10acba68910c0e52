// The `lora-studio` command as a child process: help, make-tiny-model, and the
// exit status and messages of usage errors, bad input and internal errors.
import assert from 'node:assert/strict';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EngineModel } from '../../engine/api.ts';
import { TRAIN_DEFAULTS } from '../../engine/train/config.ts';
import { runCli, tempDir } from './helpers/cli-fixtures.ts';

const COMMANDS = ['make-tiny-model', 'train', 'eval', 'generate', 'compare', 'inspect-data', 'export', 'demo'];

/** The help line of `flag`, joined with its wrapped continuation lines. */
function helpEntry(help: string, flag: string): string {
  const lines = help.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^\\s+${flag.replace(/[-]/g, '\\-')}[ ,]`).test(l));
  assert.ok(start >= 0, `help lists ${flag}:\n${help}`);
  const entry = [lines[start]!];
  for (let i = start + 1; i < lines.length && /^\s{10,}\S/.test(lines[i]!); i++) entry.push(lines[i]!.trim());
  return entry.join(' ');
}

describe('lora-studio help', () => {
  it('--help lists every command with a summary, and examples', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const c of COMMANDS) assert.match(r.stdout, new RegExp(`^  ${c} .*\\S`, 'm'), `lists ${c}`);
    assert.match(r.stdout, /Examples:\n\s+lora-studio /);
    assert.match(r.stdout, /130 stopped by Ctrl-C/);
  });

  it('train --help lists every flag with its default', async () => {
    const r = await runCli(['train', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(helpEntry(r.stdout, '--rank'), new RegExp(`default: ${TRAIN_DEFAULTS.rank}\\)`));
    assert.match(helpEntry(r.stdout, '--lr'), new RegExp(`default: ${TRAIN_DEFAULTS.lr}\\)`));
    assert.match(helpEntry(r.stdout, '--seq-len'), new RegExp(`default: ${TRAIN_DEFAULTS.seqLen}\\)`));
    assert.match(helpEntry(r.stdout, '--schedule'), new RegExp(`default: "${TRAIN_DEFAULTS.schedule}"`));
    assert.match(helpEntry(r.stdout, '--targets'), /default: all/);
    const flags = [
      '--model', '--data', '--out', '--method', '--alpha', '--dropout', '--rslora', '--init-adapter', '--format', '--columns',
      '--loss-on', '--truncation', '--skip-bad-records', '--batching', '--no-shuffle', '--warmup', '--steps', '--epochs', '--batch',
      '--grad-accum', '--weight-decay', '--adam-beta1', '--adam-beta2', '--adam-eps', '--max-grad-norm', '--seed',
      '--no-gradient-checkpointing', '--eval-split', '--eval-data', '--eval-every', '--early-stopping', '--save-every',
      '--keep-checkpoints', '--sample-prompt', '--resume', '--json',
    ];
    for (const f of flags) {
      const entry = helpEntry(r.stdout, f);
      if (!['--model', '--data', '--out', '--resume'].includes(f)) assert.match(entry, /default: /, `${f} shows its default: ${entry}`);
    }
  });

  it('every command has --help with its flags and defaults', async () => {
    const expected: Record<string, string[]> = {
      'make-tiny-model': ['--arch', '--hidden-size', '--intermediate-size', '--layers', '--heads', '--kv-heads', '--vocab-size', '--tie', '--dtype', '--shards', '--seed'],
      eval: ['--model', '--adapter', '--method', '--data', '--seq-len', '--batch', '--format', '--columns', '--loss-on', '--json'],
      generate: ['--model', '--adapter', '--method', '--prompt', '--system', '--raw', '--max-tokens', '--temperature', '--top-k', '--top-p', '--repetition-penalty', '--seed', '--stop', '--json'],
      compare: ['--model', '--adapter', '--prompts', '--out', '--max-tokens', '--temperature', '--seed'],
      'inspect-data': ['--model', '--data', '--format', '--columns', '--seq-len', '--loss-on', '--json'],
      export: ['--adapter', '--to', '--model', '--out'],
      demo: ['--work-dir', '--json'],
    };
    for (const [command, flags] of Object.entries(expected)) {
      const r = await runCli([command, '--help']);
      assert.equal(r.code, 0, r.stderr);
      for (const f of flags) helpEntry(r.stdout, f);
      if (command === 'generate') {
        assert.match(helpEntry(r.stdout, '--max-tokens'), /default: 256\)/);
        assert.match(helpEntry(r.stdout, '--temperature'), /default: 1\)/);
        assert.match(helpEntry(r.stdout, '--stop'), /repeatable; default: none/);
      }
      if (command === 'make-tiny-model') {
        assert.match(helpEntry(r.stdout, '--arch'), /default: "llama"/);
        assert.match(helpEntry(r.stdout, '--vocab-size'), /default: 272\)/);
      }
      if (command === 'inspect-data') assert.match(helpEntry(r.stdout, '--seq-len'), new RegExp(`default: ${TRAIN_DEFAULTS.seqLen}\\)`));
    }
  });
});

describe('lora-studio make-tiny-model', () => {
  it('writes a model folder that EngineModel.load loads, with a tokenizer and chat template', async () => {
    const dir = path.join(await tempDir(), 'tiny');
    const r = await runCli(['make-tiny-model', dir, '--arch', 'qwen2', '--layers', '3', '--hidden-size', '32', '--heads', '4', '--kv-heads', '2', '--shards', '2', '--dtype', 'f32']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Wrote a tiny qwen2 model/);
    const files = await readdir(dir);
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors.index.json']) assert.ok(files.includes(f), `${f} in ${files}`);
    const model = await EngineModel.load(dir, { method: 'lora' });
    try {
      assert.equal(model.config.numLayers, 3);
      assert.equal(model.config.hiddenSize, 32);
      assert.equal(model.config.vocabSize, 272, 'the byte tokenizer needs 272 rows, the default vocab size');
    } finally {
      model.dispose();
    }
    const tokConfig = JSON.parse(await readFile(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(typeof tokConfig['chat_template'], 'string');
  });

  it('refuses a folder that is not empty, and a shape that does not divide', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'keep.txt'), 'mine');
    const r = await runCli(['make-tiny-model', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is not empty/);
    assert.deepEqual(await readdir(dir), ['keep.txt']);
    const odd = await runCli(['make-tiny-model', path.join(dir, 'x'), '--heads', '3']);
    assert.equal(odd.code, 1);
    assert.match(odd.stderr, /--heads 3 does not divide --hidden-size 64/);
  });
});

describe('lora-studio demo', () => {
  it('reaches the demo, which refuses a work folder that is not empty', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'keep.txt'), 'mine');
    const r = await runCli(['demo', '--work-dir', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--work-dir/);
    assert.deepEqual(await readdir(dir), ['keep.txt']);
  });
});

describe('lora-studio errors', () => {
  it('an unknown flag is a usage error naming the flag (exit 1, no stack)', async () => {
    const r = await runCli(['generate', '--model', 'x', '--prompt', 'hi', '--temprature', '0.5']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown option '--temprature'/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(r.stdout, '');
  });

  it('a bad number names the flag and the range (exit 1)', async () => {
    for (const [args, flag] of [
      [['make-tiny-model', 'x', '--layers', 'two'], '--layers'],
      [['generate', '--model', 'x', '--prompt', 'p', '--top-p', '1.5'], '--top-p'],
      [['train', '--model', 'x', '--data', 'y', '--out', 'z', '--rank', '0'], '--rank'],
      [['train', '--model', 'x', '--data', 'y', '--out', 'z', '--lr', '1e-4x'], '--lr'],
    ] as const) {
      const r = await runCli(args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`'${flag} `) && r.stderr.includes(`${flag} takes`), `names ${flag}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
  });

  it('a missing model folder is a user error with the path (exit 1)', async () => {
    const missing = path.join(await tempDir(), 'no-model');
    const r = await runCli(['generate', '--model', missing, '--prompt', 'hi']);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(missing), r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  it('an internal error exits 2 and names a log file that holds the stack (test hook)', async () => {
    const r = await runCli(['make-tiny-model', path.join(await tempDir(), 'm')], { env: { LORA_STUDIO_CLI_TEST_CRASH: '1' } });
    assert.equal(r.code, 2);
    const m = /The details are in (\S+?); /.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'the stack goes to the log, not the terminal');
    const log = await readFile(m[1]!, 'utf8');
    await rm(m[1]!);
    assert.match(log, /crash requested by LORA_STUDIO_CLI_TEST_CRASH/);
    assert.match(log, /\n\s+at /, 'the log has the stack');
    assert.match(log, /command: lora-studio make-tiny-model /);
  });

  it('a file-system refusal is a user error, not an internal one', async () => {
    const dir = await tempDir();
    const blocker = path.join(dir, 'file');
    await writeFile(blocker, 'x');
    const r = await runCli(['make-tiny-model', path.join(blocker, 'sub')]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ENOTDIR/);
    assert.ok(r.stderr.includes(blocker), r.stderr);
  });
});
