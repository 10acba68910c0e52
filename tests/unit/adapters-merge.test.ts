// exportMerged: the base's weights plus scale·B·A, in the base's dtype, every
// other byte copied, the input's sharding kept; the result loads as an
// ordinary base model and gives the logits of base + adapter. Refusals, and a
// kill or a cancel never leave a half-written output folder.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, readdir, writeFile, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CancelledError, EngineModel, type Projection } from '../../engine/api.ts';
import { exportMerged } from '../../engine/adapters/merge.ts';
import { loadPeftAdapter, openPeftAdapter, peftModuleName, readPeftTensor, savePeftAdapter, siteKey } from '../../engine/adapters/peft.ts';
import { UserError, ModelLoadError } from '../../engine/model/errors.ts';
import { planModelLoad } from '../../engine/model/folder.ts';
import { bf16BitsToF32, f16BitsToF32 } from '../../engine/model/half.ts';
import type { TinyModelOptions } from '../../engine/model/tiny.ts';
import { readSafetensorsHeader, type SafetensorsHeader } from '../../engine/model/safetensors.ts';
import { rng, tempDir, tinyModelDir } from './helpers/engine-fixtures.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

/** A tiny base (with tokenizer files) and a PEFT adapter on it with seeded A and B; `zero` sites are left out. */
async function baseAndAdapter(model: Partial<TinyModelOptions>, targets: Projection[], zero: Array<[number, Projection]> = []) {
  const modelDir = await tinyModelDir({ tokenizer: true, vocabSize: undefined, initStd: 0.1, normJitter: 0.1, ...model });
  const m = await EngineModel.load(modelDir, { method: 'f32' });
  try {
    m.addAdapter('a', { rank: 4, alpha: 6, targets });
    const random = rng(21);
    for (let layer = 0; layer < m.config.numLayers; ++layer)
      for (const proj of targets)
        for (const which of ['A', 'B'] as const) {
          const t = m.readAdapterTensor('a', layer, proj, which);
          const off = zero.some(([l, p]) => l === layer && p === proj);
          for (let i = 0; i < t.length; ++i) t[i] = off ? 0 : 0.5 * (random() - 0.5);
          m.writeAdapterTensor('a', layer, proj, which, t);
        }
    const adapterDir = path.join(path.dirname(modelDir), 'adapter');
    await savePeftAdapter(m, 'a', adapterDir);
    return { modelDir, adapterDir };
  } finally {
    m.dispose();
  }
}

function decode(dtype: string, bytes: Buffer): Float64Array {
  const n = dtype === 'F32' ? bytes.length / 4 : bytes.length / 2;
  const out = new Float64Array(n);
  for (let i = 0; i < n; ++i)
    out[i] = dtype === 'F32' ? bytes.readFloatLE(i * 4) : dtype === 'BF16' ? bf16BitsToF32(bytes.readUInt16LE(i * 2)) : f16BitsToF32(bytes.readUInt16LE(i * 2));
  return out;
}

/** Spacing of representable numbers of `dtype` at |v|. */
function ulp(dtype: string, v: number): number {
  const mantissaBits = dtype === 'F32' ? 23 : dtype === 'BF16' ? 7 : 10;
  const e = Math.max(Math.floor(Math.log2(Math.abs(v) || 2 ** -126)), dtype === 'F16' ? -14 : -126);
  return 2 ** (e - mantissaBits);
}

async function tensorBytes(h: SafetensorsHeader, name: string): Promise<Buffer> {
  const t = h.tensors.get(name)!;
  return (await readFile(h.file)).subarray(t.offset, t.offset + t.byteLength);
}

async function logitsOf(model: EngineModel, ids: number[]): Promise<Float32Array> {
  const cache = model.createCache(2, ids.length / 2);
  try {
    return await model.forward(cache, ids, { allPositions: true });
  } finally {
    cache.dispose();
  }
}

const matrix: Array<{ what: string; model: Partial<TinyModelOptions>; targets: Projection[]; zero?: Array<[number, Projection]>; tol: { atol: number; rtol: number } }> = [
  // fp32 base: the merged weights differ from W + s·B·A only by fp32 rounding.
  { what: 'llama, f32, one file', model: { arch: 'llama', dtype: 'F32' }, targets: ['q_proj', 'v_proj', 'o_proj', 'down_proj'], tol: { atol: 1e-5, rtol: 1e-5 } },
  { what: 'qwen2 (q/k/v biases), f32, 3 shards, a layer subset', model: { arch: 'qwen2', dtype: 'F32', shards: 3 }, targets: ['q_proj', 'k_proj', 'up_proj'], zero: [[0, 'k_proj'], [1, 'up_proj']], tol: { atol: 1e-5, rtol: 1e-5 } },
  // bf16 base: each merged weight is rounded to bf16 (relative error up to
  // 2^-9), which moves these logits (size ~3) by up to ~1.5e-2; f16 (2^-12) by ~8e-4.
  { what: 'llama, bf16, 4 shards', model: { arch: 'llama', dtype: 'BF16', shards: 4 }, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], tol: { atol: 3e-2, rtol: 2e-2 } },
  { what: 'qwen2 (q/k/v biases), bf16, one file, tied embeddings', model: { arch: 'qwen2', dtype: 'BF16', tie: true }, targets: ['v_proj', 'gate_proj'], tol: { atol: 3e-2, rtol: 2e-2 } },
  { what: 'llama, f16, 2 shards', model: { arch: 'llama', dtype: 'F16', shards: 2 }, targets: ['q_proj', 'up_proj'], tol: { atol: 4e-3, rtol: 2e-3 } },
];

describe('exportMerged', () => {
  for (const c of matrix) {
    it(`${c.what}: W + scale·B·A in the base dtype, all else byte for byte, loads as a base with base + adapter logits`, async () => {
      const { modelDir, adapterDir } = await baseAndAdapter(c.model, c.targets, c.zero);
      const outDir = path.join(await tempDir(), 'merged');
      const progress: number[] = [];
      const result = await exportMerged({ modelDir, adapterDir, outDir, onProgress: (done, total) => progress.push(done / total) });
      assert.equal(progress.at(-1), 1);

      // --- files: the same names, copies byte for byte except weight files
      const inFiles = (await readdir(modelDir)).sort();
      const outFiles = (await readdir(outDir)).sort();
      assert.deepEqual(outFiles, inFiles);
      for (const f of inFiles.filter((n) => !n.endsWith('.safetensors')))
        assert.ok((await readFile(path.join(outDir, f))).equals(await readFile(path.join(modelDir, f))), `${f} copied`);
      assert.ok(outFiles.includes('tokenizer.json') && outFiles.includes('config.json'));
      if (c.model.shards && c.model.shards > 1) assert.ok(outFiles.includes('model.safetensors.index.json'));

      // --- tensors
      const plan = await planModelLoad(modelDir);
      const adapter = await openPeftAdapter(adapterDir, plan.config);
      const siteOf = new Map(adapter.config.sites.map((s) => [`${peftModuleName(s.layer, s.proj)}.weight`, s]));
      let merged = 0;
      for (const file of plan.files) {
        const hin = await readSafetensorsHeader(file);
        const hout = await readSafetensorsHeader(path.join(outDir, path.basename(file)));
        assert.equal(hout.fileSize, hin.fileSize);
        const inBytes = await readFile(file);
        const outBytes = await readFile(hout.file);
        assert.ok(outBytes.subarray(0, hin.dataStart).equals(inBytes.subarray(0, hin.dataStart)), 'header copied byte for byte');
        for (const [name, t] of hin.tensors) {
          const before = await tensorBytes(hin, name);
          const after = await tensorBytes(hout, name);
          const site = siteOf.get(name);
          if (!site) {
            assert.ok(after.equals(before), `${name} copied byte for byte`);
            continue;
          }
          merged++;
          const A = await readPeftTensor(adapter.weightsFile, adapter.tensors.get(siteKey(site.layer, site.proj, 'A'))!);
          const B = await readPeftTensor(adapter.weightsFile, adapter.tensors.get(siteKey(site.layer, site.proj, 'B'))!);
          const [rows, cols] = t.shape as [number, number];
          const w = decode(t.dtype, before);
          const got = decode(t.dtype, after);
          const r = adapter.config.rank;
          let changed = 0;
          for (let o = 0; o < rows; ++o)
            for (let i = 0; i < cols; ++i) {
              let d = 0;
              let size = Math.abs(w[o * cols + i]!); // largest magnitude the fp32 sums pass through
              for (let k = 0; k < r; ++k) {
                d += B[o * r + k]! * A[k * cols + i]!;
                size = Math.max(size, adapter.config.scale * Math.abs(d));
              }
              const exact = w[o * cols + i]! + adapter.config.scale * d; // in float64
              const g = got[o * cols + i]!;
              if (g !== w[o * cols + i]) changed++;
              // one rounding to the stored dtype, plus the fp32 arithmetic's (r + 2 roundings)
              const bound = (t.dtype === 'F32' ? 0 : ulp(t.dtype, exact)) + (r + 2) * ulp('F32', size);
              assert.ok(Math.abs(g - exact) <= bound, `${name}[${o}, ${i}] = ${g}, W + s·B·A = ${exact} (${t.dtype})`);
            }
          assert.ok(changed > rows * cols * 0.5, `${name}: the adapter changes most weights`);
        }
      }
      assert.equal(merged, adapter.config.sites.length);
      assert.equal(result.merged, merged);

      // --- the merged folder is an ordinary base; its logits are base + adapter's
      const ids = Array.from({ length: 2 * 7 }, (_, i) => 3 + ((i * 37) % 90));
      const withAdapter = await EngineModel.load(modelDir, { method: 'f32' });
      const mergedModel = await EngineModel.load(outDir, { method: 'f32' });
      try {
        await loadPeftAdapter(withAdapter, adapterDir, 'a');
        const want = await logitsOf(withAdapter, ids);
        withAdapter.setAdapterEnabled('a', false);
        const base = await logitsOf(withAdapter, ids);
        const got = await logitsOf(mergedModel, ids);
        let worst = 0;
        let effect = 0;
        for (let i = 0; i < want.length; ++i) {
          worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (c.tol.atol + c.tol.rtol * Math.abs(want[i]!)));
          effect = Math.max(effect, Math.abs(want[i]! - base[i]!));
        }
        assert.ok(worst <= 1, `merged logits differ from base + adapter by ${worst.toFixed(2)}x the tolerance`);
        assert.ok(effect > 20 * c.tol.atol, `the adapter changes the logits (${effect})`);
      } finally {
        withAdapter.dispose();
        mergedModel.dispose();
      }
    });
  }

  it('refuses a non-empty output folder and an adapter for another base; accepts an empty folder', async () => {
    const { modelDir, adapterDir } = await baseAndAdapter({ arch: 'llama' }, ['q_proj']);
    const full = path.join(await tempDir(), 'full');
    await mkdir(full);
    await writeFile(path.join(full, 'keep.txt'), 'mine');
    await assert.rejects(exportMerged({ modelDir, adapterDir, outDir: full }), (e: Error) => e instanceof UserError && e.message.includes(full) && /not empty/.test(e.message));
    assert.equal(await readFile(path.join(full, 'keep.txt'), 'utf8'), 'mine');

    const other = await baseAndAdapter({ arch: 'llama', hiddenSize: 32, numHeads: 2, numKvHeads: 1 }, ['q_proj']);
    const out = path.join(await tempDir(), 'out');
    await assert.rejects(exportMerged({ modelDir, adapterDir: other.adapterDir, outDir: out }), (e: Error) =>
      e instanceof ModelLoadError && /q_proj\.lora_A\.weight/.test(e.message) && e.message.includes('[4, 32]') && e.message.includes('[4, 64]'));
    await assert.rejects(stat(out), 'nothing written');

    const empty = path.join(await tempDir(), 'empty');
    await mkdir(empty);
    const r = await exportMerged({ modelDir, adapterDir, outDir: empty });
    assert.equal(r.outDir, empty);
    assert.ok((await readdir(empty)).includes('model.safetensors'));
  });

  it('a cancelled export leaves nothing behind', async () => {
    const { modelDir, adapterDir } = await baseAndAdapter({ arch: 'llama', shards: 2 }, ['q_proj', 'down_proj']);
    const parent = await tempDir();
    const outDir = path.join(parent, 'merged');
    const controller = new AbortController();
    await assert.rejects(
      exportMerged({ modelDir, adapterDir, outDir, signal: controller.signal, onProgress: (done) => done === 3 && controller.abort() }),
      CancelledError,
    );
    assert.deepEqual(await readdir(parent), [], 'no output folder and no partial folder');
  });

  it('a process killed during the export never leaves a half-written output folder; the next export cleans up', async () => {
    const { modelDir, adapterDir } = await baseAndAdapter({ arch: 'llama', shards: 2 }, ['q_proj', 'down_proj']);
    const parent = await tempDir();
    const outDir = path.join(parent, 'merged');
    // The child exports, and after its 5th tensor reports and holds still
    // (blocking its thread) until it is killed.
    const child = path.join(await tempDir(), 'export-child.mts');
    await writeFile(child, [
      `import { exportMerged } from ${JSON.stringify(pathToFileURL(path.resolve(here, '../../engine/adapters/merge.ts')).href)};`,
      'const [modelDir, adapterDir, outDir] = process.argv.slice(2);',
      'await exportMerged({ modelDir, adapterDir, outDir, onProgress: (done) => {',
      "  if (done !== 5) return;",
      "  process.stdout.write('holding\\n');",
      '  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);',
      '} });',
      "process.stdout.write('finished\\n');",
    ].join('\n'));
    const proc = spawn(process.execPath, ['--import', 'tsx', child, modelDir, adapterDir, outDir], { cwd: path.resolve(here, '../..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const exit = new Promise<NodeJS.Signals | null>((resolve) => proc.on('exit', (_code, signal) => resolve(signal)));
    await new Promise<void>((resolve, reject) => {
      proc.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('holding')) resolve();
        if (d.toString().includes('finished')) reject(new Error('the export finished before it was killed'));
      });
      proc.on('exit', () => reject(new Error(`the child exited early: ${stderr}`)));
    });
    // mid-export: the partial folder is there, the output folder is not
    const during = await readdir(parent);
    assert.ok(during.some((n) => n.startsWith('.merged.partial-')), `partial folder present: ${during.join(', ')}`);
    assert.ok(!during.includes('merged'));
    proc.kill('SIGKILL');
    assert.equal(await exit, 'SIGKILL');
    assert.ok(!(await readdir(parent)).includes('merged'), 'no output folder after the kill');

    const r = await exportMerged({ modelDir, adapterDir, outDir });
    assert.deepEqual(await readdir(parent), ['merged'], 'the abandoned partial folder is gone');
    assert.ok(r.tensors > 5);
  });
});
