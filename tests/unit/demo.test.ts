// The demo end to end: the full demo (tiny model, real training run, base vs
// adapted) must teach the capitals skill: the adapted answers name the right
// capital where the base's answers are noise, checked on the answers'
// text here, not on the score the demo reports. Also: the text output, the
// bundled dataset against its generator, the skill check, a stop mid-run and
// a work folder that is not empty.
import assert from 'node:assert/strict';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { DEMO_SETTINGS, runDemo, runDemoWith, type DemoEvent, type DemoSettings } from '../../engine/demo/demo.ts';
import { DEMO_DATASET, datasetText } from '../../engine/demo/make-dataset.ts';
import { answer, CAPITALS, demoPrompts, HELD_PHRASINGS, question, showsSkill, TRAIN_PHRASINGS } from '../../engine/demo/skill.ts';
import { UserError } from '../../engine/model/errors.ts';
import type { TrainEvent } from '../../engine/train/types.ts';
import { tempDir } from './helpers/engine-fixtures.ts';

/** The full demo must get at least this many of its ten held-out prompts right, and the base none. */
const MIN_ADAPTED = 9;
const MAX_BASE = 0;

function parseLines(text: string): Array<TrainEvent | DemoEvent> {
  return text
    .trimEnd()
    .split('\n')
    .map((line, i) => {
      try {
        return JSON.parse(line) as TrainEvent | DemoEvent;
      } catch {
        throw new Error(`output line ${i + 1} is not JSON: ${line.slice(0, 80)}`);
      }
    });
}

/** DEMO_SETTINGS shortened to a few steps: for the checks that are about the output, not the learning. */
function quick(steps: number): DemoSettings {
  return { ...DEMO_SETTINGS, training: { ...DEMO_SETTINGS.training, steps, warmupSteps: 0 }, prompts: demoPrompts().slice(0, 2), maxTokens: 8 };
}

describe('the demo', () => {
  it('teaches the skill: adapted answers name the capital on held-out wordings, the base does not', async () => {
    const workDir = path.join(await tempDir(), 'demo');
    let out = '';
    await runDemo({ workDir, json: true, write: (t) => (out += t) });
    const lines = parseLines(out);
    const demo = lines.at(-1) as DemoEvent;
    assert.equal(demo.type, 'demo');
    assert.equal(demo.reason, 'completed');

    // The training run's own events, in order, one per line.
    const events = lines.slice(0, -1) as TrainEvent[];
    assert.equal(events[0]!.type, 'start');
    const steps = events.filter((e): e is Extract<TrainEvent, { type: 'step' }> => e.type === 'step');
    assert.equal(steps.length, DEMO_SETTINGS.training.steps);
    const done = events.find((e) => e.type === 'done');
    assert.ok(done && done.type === 'done' && done.reason === 'completed');
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const firstLoss = mean(steps.slice(0, 10).map((s) => s.loss));
    const lastLoss = mean(steps.slice(-10).map((s) => s.loss));
    assert.ok(lastLoss < firstLoss / 3, `loss fell from ${firstLoss.toFixed(3)} to ${lastLoss.toFixed(3)}`);

    // Score the answers' text independently of the demo's own score.
    const prompts = demoPrompts();
    const entries = demo.comparison!.entries;
    assert.deepEqual(entries.map((e) => e.prompt), prompts.map((p) => p.prompt));
    const adapted = entries.filter((e, i) => showsSkill(e.adapted.text ?? '', prompts[i]!.expected)).length;
    const base = entries.filter((e, i) => showsSkill(e.base.text ?? '', prompts[i]!.expected)).length;
    const shown = entries.map((e) => `${e.prompt} → ${JSON.stringify(e.adapted.text)}`).join('\n');
    assert.ok(adapted >= MIN_ADAPTED, `adapted ${adapted}/${entries.length} (need ${MIN_ADAPTED}):\n${shown}`);
    assert.ok(base <= MAX_BASE, `base ${base}/${entries.length}`);
    assert.deepEqual(demo.score, { adapted, base, total: prompts.length });
    // Greedy decoding of the adapted model reproduces the trained sentence exactly where it is right.
    for (const [i, e] of entries.entries())
      if (showsSkill(e.adapted.text ?? '', prompts[i]!.expected)) assert.equal(e.adapted.text, answer(prompts[i]!.expected));

    // The run wrote a PEFT adapter folder, and the comparison was saved.
    assert.equal(demo.adapter_path, path.join(workDir, 'run', 'adapter'));
    assert.deepEqual((await readdir(demo.adapter_path!)).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    assert.ok((await stat(path.join(demo.adapter_path!, 'adapter_model.safetensors'))).size > 1000);
    const saved = JSON.parse(await readFile(demo.comparison_path!, 'utf8')) as { format: string; entries: unknown[] };
    assert.equal(saved.format, 'lora-studio-compare');
    assert.equal(saved.entries.length, prompts.length);
  });

  it('prints a header, progress, the side-by-side comparison, a verdict and the time it took', async () => {
    const workDir = path.join(await tempDir(), 'demo-text');
    let out = '';
    const result = await runDemoWith({ workDir, write: (t) => (out += t) }, quick(20));
    assert.match(out, /^LoRA Studio demo: teaching a tiny model to name the capitals of 16 countries, answering e\.g\. "Paris is the capital of France\."\n/);
    assert.match(out, /step +1\/20 +loss \d+\.\d{3}/);
    assert.match(out, /step 20\/20 +loss \d+\.\d{3}/);
    assert.equal(out.match(/^ +step /gm)!.length, 11, 'every 2nd step, and the first');
    assert.ok(out.includes(`The adapter is in ${path.join(workDir, 'run', 'adapter')}`));
    assert.ok(out.includes('Prompt 1\nWhat is the capital city of France?\nbase'), 'the prompt shown as the question, not the chat template');
    assert.match(out, /Verdict: the adapted model named the right capital in \d+\/2 answers; the base model in \d+\/2\.\n/);
    assert.match(out, /Done in \d+\.\d s \(model \d+\.\d s, training \d+\.\d s, comparison \d+\.\d s\)/);
    assert.ok(!out.includes('{"type"'), 'no JSON in text mode');
    assert.equal(result.score.total, 2);
  });

  it('stops cleanly when aborted during training', async () => {
    const workDir = path.join(await tempDir(), 'demo-stop');
    const controller = new AbortController();
    let out = '';
    const result = await runDemoWith(
      {
        workDir,
        json: true,
        signal: controller.signal,
        write: (t) => {
          out += t;
          if (t.includes('"type":"step"') && t.includes('"step":3,')) controller.abort();
        },
      },
      quick(200),
    );
    assert.equal(result.reason, 'stopped');
    assert.equal(result.comparison, null);
    const lines = parseLines(out);
    const done = lines.find((e) => e.type === 'done');
    assert.ok(done && done.type === 'done' && done.reason === 'stopped' && done.step >= 3 && done.step < 200);
    assert.equal(lines.at(-1)!.type, 'demo');
  });

  it('refuses a work folder that is not empty, naming it', async () => {
    const workDir = await tempDir();
    await writeFile(path.join(workDir, 'notes.txt'), 'mine');
    await assert.rejects(runDemo({ workDir, write: () => {} }), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.ok(e.message.includes(workDir) && e.message.includes('notes.txt') && e.message.includes('--work-dir'), e.message);
      return true;
    });
  });
});

describe('the demo data and skill check', () => {
  it('the bundled dataset is exactly what the generator writes, and small', async () => {
    const text = await readFile(DEMO_DATASET, 'utf8');
    assert.equal(text, datasetText(), 'regenerate with: npx tsx engine/demo/make-dataset.ts');
    assert.ok(Buffer.byteLength(text) < 64 * 1024, `${Buffer.byteLength(text)} bytes`);
    const records = text.trimEnd().split('\n').map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] });
    assert.equal(records.length, CAPITALS.length * TRAIN_PHRASINGS.length);
    for (const r of records) assert.deepEqual(r.messages.map((m) => m.role), ['user', 'assistant']);
  });

  it('no demo prompt is a training question (the demo asks in held-out wordings)', async () => {
    const trained = new Set(datasetText().trimEnd().split('\n').map((l) => (JSON.parse(l) as { messages: { content: string }[] }).messages[0]!.content));
    const prompts = demoPrompts();
    assert.equal(prompts.length, 10);
    assert.equal(new Set(prompts.map((p) => p.expected.country)).size, 10, 'ten different countries');
    for (const p of prompts) {
      assert.ok(!trained.has(p.prompt), p.prompt);
      assert.ok(HELD_PHRASINGS.some((h) => question(h, p.expected.country) === p.prompt));
    }
    for (const h of HELD_PHRASINGS) assert.ok(!TRAIN_PHRASINGS.includes(h), h);
  });

  it('the skill check wants the right capital as a whole word', () => {
    const france = CAPITALS.find((c) => c.country === 'France')!;
    const cases: [string, boolean][] = [
      ['Paris is the capital of France.', true],
      ['It is Paris', true],
      ['(Paris)', true],
      ['paris is the capital of France.', false], // a proper noun keeps its capital letter
      ['Parisian food', false],
      ['Lima is the capital of France.', false],
      ['', false],
      ['\u0010�M<|im_start|>Pa', false],
    ];
    for (const [text, want] of cases) assert.equal(showsSkill(text, france), want, JSON.stringify(text));
  });
});
