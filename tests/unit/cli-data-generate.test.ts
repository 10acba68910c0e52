// `lora-studio inspect-data`, `generate`, `compare` and `export --to peft` on
// tiny models in temp folders, run as child processes (and generate once
// in-process, to see each streamed write).
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { chatData, randomAdapter, runCli, runInProcess, tempDir, tinyChatModel } from './helpers/cli-fixtures.ts';

let root: string;
let model: string;
let adapter: string;
let data: string;

before(async () => {
  root = await tempDir('lora-studio-cli-');
  model = await tinyChatModel(root);
  adapter = await randomAdapter(model, path.join(root, 'my-adapter'));
  data = await chatData(path.join(root, 'chat.jsonl'), 6);
});

describe('lora-studio inspect-data', () => {
  it('reports counts and marks the trained text of the first example', async () => {
    const r = await runCli(['inspect-data', '--model', model, '--data', data, '--seq-len', '256']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Records: +6 good/);
    assert.match(r.stdout, /Examples: +6 \(sequence length 256\)/);
    assert.match(r.stdout, /First example \(line 1, \d+ tokens/);
    // The assistant's answer (and its end token) is trained; the question is not.
    assert.match(r.stdout, /⟦0\.<\|im_end\|>/);
    assert.doesNotMatch(r.stdout, /⟦[^⟧]*What is 0/);
  });

  it('--json prints the report as one object', async () => {
    const r = await runCli(['inspect-data', '--model', model, '--data', data, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { records: number; examples: number; tokens: { total: number; trained: number } };
    assert.equal(report.records, 6);
    assert.equal(report.examples, 6);
    assert.ok(report.tokens.trained > 0 && report.tokens.trained < report.tokens.total);
  });

  it('a bad line is a user error naming file:line, without a stack (exit 1)', async () => {
    const bad = path.join(root, 'bad.jsonl');
    const good = await readFile(data, 'utf8');
    await writeFile(bad, good.split('\n').slice(0, 2).join('\n') + '\n{"messages": [{"role": "user", "content": "cut\n');
    const r = await runCli(['inspect-data', '--model', model, '--data', bad]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`${bad}:3:`), r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.equal(r.stdout, '');
    const skipped = await runCli(['inspect-data', '--model', model, '--data', bad, '--skip-bad-records']);
    assert.equal(skipped.code, 0, skipped.stderr);
    assert.match(skipped.stdout, /2 good, 1 bad/);
  });
});

describe('lora-studio generate', () => {
  const args = (seed: number, ...more: string[]) => ['generate', '--model', model, '--prompt', 'Hello', '--max-tokens', '16', '--seed', String(seed), ...more];

  it('respects --max-tokens, and the same seed gives the same text', async () => {
    const a = await runCli([...args(5), '--json']);
    assert.equal(a.code, 0, a.stderr);
    const ra = JSON.parse(a.stdout) as { text: string; tokens: number[]; finish_reason: string; generated_tokens: number };
    assert.ok(ra.generated_tokens <= 16);
    if (ra.finish_reason === 'length') assert.equal(ra.generated_tokens, 16);
    const b = JSON.parse((await runCli([...args(5), '--json'])).stdout) as typeof ra;
    assert.deepEqual(b.tokens, ra.tokens);
    assert.equal(b.text, ra.text);
    const c = JSON.parse((await runCli([...args(6), '--json'])).stdout) as typeof ra;
    assert.notDeepEqual(c.tokens, ra.tokens, 'another seed gives other tokens');
    // Without --json the same text is streamed to stdout, the stats go to stderr.
    const plain = await runCli(args(5));
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, `${ra.text}\n`);
    assert.match(plain.stderr, new RegExp(`\\[${ra.finish_reason}: ${ra.generated_tokens} tokens`));
  });

  it('streams: the text arrives in many writes, one per settled token', async () => {
    const r = await runInProcess([...args(5, '--max-tokens', '24', '--raw')]);
    assert.equal(r.code, 0, r.stderr);
    const json = await runInProcess([...args(5, '--max-tokens', '24', '--raw', '--json')]);
    const result = JSON.parse(json.stdout) as { text: string; generated_tokens: number };
    assert.equal(r.stdout, `${result.text}\n`);
    assert.ok(r.writes.length >= result.generated_tokens / 2, `${r.writes.length} writes for ${result.generated_tokens} tokens`);
  });

  it('--max-tokens 1 gives exactly one token', async () => {
    const r = await runCli(['generate', '--model', model, '--prompt', 'Hi', '--max-tokens', '1', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { generated_tokens: number }).generated_tokens, 1);
  });
});

describe('lora-studio compare', () => {
  it('shows base and adapted side by side and writes .json and .md', async () => {
    const prompts = path.join(root, 'prompts.txt');
    await writeFile(prompts, 'What is 1 plus 1?\n\nName a colour.\n');
    const out = path.join(root, 'cmp', 'result.md');
    const r = await runCli(['compare', '--model', model, '--adapter', adapter, '--prompts', prompts, '--max-tokens', '12', '--seed', '3', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Base vs adapted: my-adapter/);
    assert.match(r.stdout, /Prompt 2\nName a colour\./);
    assert.ok(r.stdout.includes('│ adapted: my-adapter'));
    const files = (await readdir(path.dirname(out))).sort();
    assert.deepEqual(files, ['result.json', 'result.md']);
    const report = JSON.parse(await readFile(path.join(root, 'cmp', 'result.json'), 'utf8')) as {
      format: string;
      sampling: { seed: number; maxTokens: number };
      entries: { prompt: string; base: { tokens: number[] }; adapted: { tokens: number[] } }[];
    };
    assert.equal(report.format, 'lora-studio-compare');
    assert.equal(report.sampling.seed, 3);
    assert.deepEqual(report.entries.map((e) => e.prompt), ['What is 1 plus 1?', 'Name a colour.']);
    assert.ok(report.entries.some((e) => JSON.stringify(e.base.tokens) !== JSON.stringify(e.adapted.tokens)), 'the adapter changes the output');
    assert.match(await readFile(out, 'utf8'), /^# Base vs adapted: my-adapter/);
    // The base side is the base model: the same seed with generate gives the same tokens.
    const g = await runCli(['generate', '--model', model, '--prompt', 'What is 1 plus 1?', '--max-tokens', '12', '--seed', '3', '--json']);
    assert.deepEqual((JSON.parse(g.stdout) as { tokens: number[] }).tokens, report.entries[0]!.base.tokens);
  });

  it('reads .jsonl prompts and names the bad line', async () => {
    const prompts = path.join(root, 'prompts.jsonl');
    await writeFile(prompts, '{"prompt": "Hi"}\n{"text": "no prompt"}\n');
    const r = await runCli(['compare', '--model', model, '--adapter', adapter, '--prompts', prompts]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`${prompts}:2:`), r.stderr);
  });
});

describe('lora-studio export --to peft', () => {
  it('copies the adapter as a PEFT folder that loads, and refuses a non-empty target', async () => {
    const out = path.join(root, 'exported');
    const r = await runCli(['export', '--adapter', adapter, '--to', 'peft', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await readdir(out)).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    assert.deepEqual(await readFile(path.join(out, 'adapter_model.safetensors')), await readFile(path.join(adapter, 'adapter_model.safetensors')));
    assert.deepEqual((await readdir(root)).filter((f) => f.startsWith('.')), [], 'no temp folder left');
    const again = await runCli(['export', '--adapter', adapter, '--to', 'peft', '--out', out]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is not empty/);
    const g = await runCli(['generate', '--model', model, '--adapter', out, '--prompt', 'Hi', '--max-tokens', '2']);
    assert.equal(g.code, 0, g.stderr);
  });
});
