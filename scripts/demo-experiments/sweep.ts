// Tuning the demo: runs it with changed settings for several seeds and scores
// the adapted answers on every country in every held-out wording (48 prompts,
// a wider check than the demo's ten), plus any wordings given as a third
// argument ('|' between them).
//
//   npx tsx scripts/demo-experiments/sweep.ts '{"training":{"steps":1500}}' 0,1,2,3 'Capital of {country}?'
//
// The first argument is merged into DEMO_SETTINGS (model and training
// separately); "seed" in training varies the data order and adapter init, and
// the model seed varies with it, so each seed is a different random base.
import { rm } from 'node:fs/promises';
import { DEMO_SETTINGS, runDemoWith, type DemoSettings } from '../../engine/demo/demo.ts';
import { CAPITALS, HELD_PHRASINGS, question } from '../../engine/demo/skill.ts';

const change = JSON.parse(process.argv[2] ?? '{}') as { model?: object; training?: object; maxTokens?: number };
const seeds = (process.argv[3] ?? '0,1,2,3').split(',').map(Number);
const wordings = [...HELD_PHRASINGS, ...(process.argv[4] ? process.argv[4].split('|') : [])];
const prompts = CAPITALS.flatMap((c) => wordings.map((h) => ({ prompt: question(h, c.country), expected: c })));
const scores: number[] = [];
for (const seed of seeds) {
  const settings: DemoSettings = {
    model: { ...DEMO_SETTINGS.model, ...change.model, seed: 7 + seed },
    training: { ...DEMO_SETTINGS.training, ...change.training, seed: 42 + seed },
    prompts,
    maxTokens: change.maxTokens ?? DEMO_SETTINGS.maxTokens,
  };
  let lastLoss = NaN;
  const result = await runDemoWith(
    {
      json: true,
      write: (line) => {
        const e = JSON.parse(line) as { type: string; loss?: number };
        if (e.type === 'step') lastLoss = e.loss!;
      },
    },
    settings,
  );
  scores.push(result.score.adapted);
  const failed = result.checks.filter((c) => !c.adapted).map((c) => c.prompt);
  console.log(
    `seed ${seed}: adapted ${result.score.adapted}/${result.score.total}, base ${result.score.base}, final loss ${lastLoss.toFixed(3)}, ` +
      `${result.seconds.total.toFixed(1)} s; failed: ${failed.join(' | ') || 'none'}`,
  );
  await rm(result.work_dir, { recursive: true, force: true });
}
console.log(`${JSON.stringify(change)}: mean ${(scores.reduce((a, b) => a + b, 0) / scores.length).toFixed(1)}/${prompts.length}, min ${Math.min(...scores)}`);
