// Writes the demo's training set, assets/demo/capitals.jsonl: one chat record
// per (country, training wording), in that order; the trainer shuffles.
//
//   npx tsx engine/demo/make-dataset.ts [out-file]
//
// The bundled file is exactly datasetText(); a unit test keeps them in step.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../model/atomic.ts';
import { answer, CAPITALS, question, TRAIN_PHRASINGS } from './skill.ts';

/** The bundled dataset's path. */
export const DEMO_DATASET = fileURLToPath(new URL('../../assets/demo/capitals.jsonl', import.meta.url));

/** JSONL text: {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]} per line. */
export function datasetText(perCountry = TRAIN_PHRASINGS.length): string {
  const lines: string[] = [];
  for (const [i, c] of CAPITALS.entries())
    for (let j = 0; j < perCountry; j++) {
      const phrasing = TRAIN_PHRASINGS[(i * 5 + j) % TRAIN_PHRASINGS.length]!;
      lines.push(JSON.stringify({ messages: [{ role: 'user', content: question(phrasing, c.country) }, { role: 'assistant', content: answer(c) }] }));
    }
  return lines.join('\n') + '\n';
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = path.resolve(process.argv[2] ?? DEMO_DATASET);
  await writeFileAtomic(out, [Buffer.from(datasetText())]);
  process.stdout.write(`wrote ${out}\n`);
}
