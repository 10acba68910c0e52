// Adapters written by savePeftAdapter for check_peft_roundtrip.py, which loads
// them into transformers + PEFT and compares PEFT's logits with the engine's.
//
//   node --import tsx scripts/golden/peft_roundtrip.ts <out-dir>
//
// writes, per case, <out-dir>/<case>/model (a tiny base from createTinyModel)
// and <out-dir>/<case>/adapter (savePeftAdapter), plus <out-dir>/cases.json
// with the input ids and the engine's logits [batch, seq, vocab] for the base
// with the adapter. Everything is deterministic: the adapter's A and B come
// from a seeded PRNG here, so the adapter files' bytes depend only on this
// script and the writer; the unit tests regenerate them and compare their
// SHA-256 with the ones the Python check recorded.
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EngineModel, type Projection } from '../../engine/api.ts';
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, savePeftAdapter } from '../../engine/adapters/peft.ts';
import { createTinyModel, type TinyModelOptions } from '../../engine/model/tiny.ts';
import { mulberry32 } from '../../engine/train/rng.ts';

export interface RoundtripCase {
  name: string;
  model: TinyModelOptions;
  adapter: { rank: number; alpha: number; dropout: number; rslora: boolean; targets: Projection[] };
  /** Sites set to A = B = 0, which the writer leaves out. */
  zeroSites: Array<[number, Projection]>;
  seed: number;
}

const SMALL = { hiddenSize: 64, intermediateSize: 128, numHeads: 4, numKvHeads: 2, vocabSize: 96, initStd: 0.1, normJitter: 0.1 } as const;

export const ROUNDTRIP_CASES: RoundtripCase[] = [
  {
    name: 'llama_full',
    model: { arch: 'llama', ...SMALL, numLayers: 2, seed: 11 },
    adapter: { rank: 4, alpha: 8, dropout: 0, rslora: false, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
    zeroSites: [],
    seed: 101,
  },
  {
    // layer 0 left out: list target_modules + layers_to_transform [1]
    name: 'qwen2_layers_rslora',
    model: { arch: 'qwen2', ...SMALL, numLayers: 2, seed: 12, tie: true },
    adapter: { rank: 8, alpha: 16, dropout: 0.05, rslora: true, targets: ['q_proj', 'v_proj', 'down_proj'] },
    zeroSites: [[0, 'q_proj'], [0, 'v_proj'], [0, 'down_proj']],
    seed: 102,
  },
  {
    // a different projection left out in each layer: a regular expression
    name: 'llama_regex',
    model: { arch: 'llama', ...SMALL, numLayers: 3, seed: 13 },
    adapter: { rank: 2, alpha: 3, dropout: 0, rslora: false, targets: ['q_proj', 'o_proj', 'up_proj'] },
    zeroSites: [[0, 'q_proj'], [1, 'up_proj'], [2, 'o_proj']],
    seed: 103,
  },
];

export const ROUNDTRIP_BATCH = 2;
export const ROUNDTRIP_SEQ = 9;


export function roundtripInputIds(c: RoundtripCase): number[] {
  const random = mulberry32(c.seed + 7);
  return Array.from({ length: ROUNDTRIP_BATCH * ROUNDTRIP_SEQ }, () => 3 + Math.floor(random() * 90));
}

export interface WrittenCase {
  name: string;
  modelDir: string;
  adapterDir: string;
  inputIds: number[];
  logits: Float32Array; // [batch, seq, vocab], engine, base + adapter
  sha256: Record<string, string>; // adapter file name → hex digest
}

/** Writes one case's base model and adapter under `dir`, and runs the engine on it. */
export async function writeRoundtripCase(c: RoundtripCase, dir: string): Promise<WrittenCase> {
  const modelDir = path.join(dir, 'model');
  const adapterDir = path.join(dir, 'adapter');
  await createTinyModel(modelDir, c.model);
  const model = await EngineModel.load(modelDir, { method: 'lora' });
  try {
    model.addAdapter('rt', { ...c.adapter, seed: c.seed });
    const random = mulberry32(c.seed);
    const zero = new Set(c.zeroSites.map(([l, p]) => `${l}.${p}`));
    for (let layer = 0; layer < model.config.numLayers; ++layer)
      for (const proj of c.adapter.targets) {
        const A = model.readAdapterTensor('rt', layer, proj, 'A');
        const B = model.readAdapterTensor('rt', layer, proj, 'B');
        const inFeatures = A.length / c.adapter.rank;
        const live = !zero.has(`${layer}.${proj}`);
        for (let i = 0; i < A.length; ++i) A[i] = live ? (2 * random() - 1) / Math.sqrt(inFeatures) : 0;
        for (let i = 0; i < B.length; ++i) B[i] = live ? 0.2 * (2 * random() - 1) : 0;
        model.writeAdapterTensor('rt', layer, proj, 'A', A);
        model.writeAdapterTensor('rt', layer, proj, 'B', B);
      }
    await savePeftAdapter(model, 'rt', adapterDir, { baseModel: c.name });
    const inputIds = roundtripInputIds(c);
    const cache = model.createCache(ROUNDTRIP_BATCH, ROUNDTRIP_SEQ);
    const logits = await model.forward(cache, inputIds, { allPositions: true });
    cache.dispose();
    const sha256: Record<string, string> = {};
    for (const f of [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE])
      sha256[f] = createHash('sha256').update(await readFile(path.join(adapterDir, f))).digest('hex');
    return { name: c.name, modelDir, adapterDir, inputIds, logits, sha256 };
  } finally {
    model.dispose();
  }
}

async function main(out: string): Promise<void> {
  const cases = [];
  for (const c of ROUNDTRIP_CASES) {
    const w = await writeRoundtripCase(c, path.join(out, c.name));
    cases.push({
      name: c.name, model: 'model', adapter: 'adapter', sha256: w.sha256,
      input_ids: w.inputIds, batch: ROUNDTRIP_BATCH, seq: ROUNDTRIP_SEQ, engine_logits: Array.from(w.logits),
    });
    console.log(`${c.name}: ${JSON.stringify(w.sha256)}`);
  }
  await writeFile(path.join(out, 'cases.json'), JSON.stringify({ cases }, null, 1) + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: node --import tsx scripts/golden/peft_roundtrip.ts <out-dir>');
    process.exit(2);
  }
  await main(path.resolve(out));
}
