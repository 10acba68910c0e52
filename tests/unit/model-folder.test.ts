import assert from 'node:assert/strict';
import { open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseModelConfig, type ModelArch } from '../../engine/model/config.ts';
import { planModelLoad, type LoadPlan, type TensorRef } from '../../engine/model/folder.ts';
import { computeInvFreq } from '../../engine/model/rope.ts';
import { readSafetensorsHeader, writeSafetensors, type TensorToWrite } from '../../engine/model/safetensors.ts';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { expectLoadError, withTempDir } from './helpers/model-fixtures.ts';

// --- helpers ----------------------------------------------------------------

async function editConfig(dir: string, edit: (config: Record<string, unknown>) => void): Promise<void> {
  const file = path.join(dir, 'config.json');
  const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(config);
  await writeFile(file, JSON.stringify(config, null, 2));
}

// Rewrites a safetensors file after `edit` changes its tensor list.
async function editWeights(file: string, edit: (tensors: TensorToWrite[]) => TensorToWrite[]): Promise<void> {
  const header = await readSafetensorsHeader(file);
  const bytes = await readFile(file);
  const tensors: TensorToWrite[] = [...header.tensors].map(([name, info]) => ({
    name,
    dtype: info.dtype as TensorToWrite['dtype'],
    shape: info.shape,
    data: bytes.subarray(info.offset, info.offset + info.byteLength),
  }));
  await writeSafetensors(file, edit(tensors), header.metadata ?? undefined);
}

async function tensorBytes(ref: TensorRef): Promise<Buffer> {
  const handle = await open(ref.file, 'r');
  try {
    const buffer = Buffer.alloc(ref.byteLength);
    await handle.read(buffer, 0, ref.byteLength, ref.offset);
    return buffer;
  } finally {
    await handle.close();
  }
}

function allRefs(plan: LoadPlan): TensorRef[] {
  const { embed, finalNorm, lmHead, layers } = plan.tensors;
  return [embed, finalNorm, ...(lmHead ? [lmHead] : []), ...layers.flatMap((layer) => Object.values(layer) as TensorRef[])];
}

// --- loading each architecture ----------------------------------------------

describe('planModelLoad: architectures', () => {
  const expectations: Array<{ arch: ModelArch; biases: string[]; qkNorm: boolean; eos: number[] }> = [
    { arch: 'llama', biases: [], qkNorm: false, eos: [2] },
    { arch: 'mistral', biases: [], qkNorm: false, eos: [2] },
    { arch: 'qwen2', biases: ['qBias', 'kBias', 'vBias'], qkNorm: false, eos: [] },
    { arch: 'qwen3', biases: [], qkNorm: true, eos: [] },
  ];
  for (const e of expectations) {
    it(`loads a tiny ${e.arch} model`, async () => {
      await withTempDir(async (dir) => {
        await createTinyModel(dir, { arch: e.arch });
        const plan = await planModelLoad(dir);
        const c = plan.config;
        assert.equal(plan.dir, dir);
        assert.equal(c.arch, e.arch);
        assert.deepEqual(
          [c.vocabSize, c.hiddenSize, c.intermediateSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim],
          [96, 64, 128, 2, 4, 2, 16],
        );
        assert.equal(c.rmsNormEps, 1e-6);
        assert.equal(c.ropeTheta, 10000);
        assert.equal(c.ropeScaling, null);
        assert.equal(c.tieWordEmbeddings, false);
        assert.equal(c.qkNorm, e.qkNorm);
        assert.deepEqual(c.eosTokenIds, e.eos);
        assert.equal(c.torchDtype, 'bfloat16');
        assert.equal(c.slidingWindow, null);
        assert.deepEqual(plan.files, [path.join(dir, 'model.safetensors')]);
        assert.equal(plan.invFreq.length, 8);

        const { embed, finalNorm, lmHead, layers } = plan.tensors;
        assert.deepEqual(embed.shape, [96, 64]);
        assert.equal(embed.dtype, 'BF16');
        assert.deepEqual(finalNorm.shape, [64]);
        assert.deepEqual(lmHead?.shape, [96, 64]);
        assert.equal(layers.length, 2);
        const layer = layers[1]!;
        assert.equal(layer.k.name, 'model.layers.1.self_attn.k_proj.weight');
        assert.deepEqual(layer.q.shape, [64, 64]);
        assert.deepEqual(layer.k.shape, [32, 64]);
        assert.deepEqual(layer.o.shape, [64, 64]);
        assert.deepEqual(layer.gate.shape, [128, 64]);
        assert.deepEqual(layer.down.shape, [64, 128]);
        const optional = Object.keys(layer).filter((k) => k.endsWith('Bias'));
        assert.deepEqual(optional, e.biases);
        assert.equal(layer.qNorm !== undefined && layer.kNorm !== undefined, e.qkNorm);
        if (e.qkNorm) assert.deepEqual(layer.qNorm?.shape, [16]);

        // Offsets are absolute: the final norm's first element is 1.0 (BF16 0x3f80).
        assert.equal((await tensorBytes(finalNorm)).readUInt16LE(0), 0x3f80);
        // Every tensor of the file is referenced, so the plan covers the data section.
        const header = await readSafetensorsHeader(plan.files[0]!);
        assert.equal(plan.totalBytes, header.fileSize - header.dataStart);
        assert.equal(allRefs(plan).length, header.tensors.size);
      });
    });
  }

  it('loads llama q/k/v/o and MLP biases when attention_bias and mlp_bias are set', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', attentionBias: true, mlpBias: true, dtype: 'F32' });
      const plan = await planModelLoad(dir);
      assert.equal(plan.config.attentionBias && plan.config.oProjBias && plan.config.mlpBias, true);
      const layer = plan.tensors.layers[0]!;
      assert.deepEqual(layer.qBias?.shape, [64]);
      assert.deepEqual(layer.kBias?.shape, [32]);
      assert.deepEqual(layer.vBias?.shape, [32]);
      assert.deepEqual(layer.oBias?.shape, [64]);
      assert.deepEqual(layer.gateBias?.shape, [128]);
      assert.deepEqual(layer.upBias?.shape, [128]);
      assert.deepEqual(layer.downBias?.shape, [64]);
      assert.equal(layer.q.dtype, 'F32');
    });
  });

  it('loads qwen3 o_proj bias with attention_bias, and qwen2 never has one', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(path.join(dir, 'q3'), { arch: 'qwen3', attentionBias: true });
      const q3 = await planModelLoad(path.join(dir, 'q3'));
      assert.deepEqual(Object.keys(q3.tensors.layers[0]!).filter((k) => k.endsWith('Bias')), ['qBias', 'kBias', 'vBias', 'oBias']);
      await createTinyModel(path.join(dir, 'q2'), { arch: 'qwen2' });
      const q2 = await planModelLoad(path.join(dir, 'q2'));
      assert.equal(q2.config.oProjBias, false);
    });
  });

  it('ignores attention_bias for mistral, as transformers does', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'mistral', configOverrides: { attention_bias: true, sliding_window: 512 } });
      const plan = await planModelLoad(dir);
      assert.equal(plan.config.attentionBias, false);
      assert.equal(plan.tensors.layers[0]!.qBias, undefined);
      assert.equal(plan.config.slidingWindow, 512);
    });
  });

  it('loads F16 weights and an explicit head_dim', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'qwen3', dtype: 'F16', headDim: 32, numHeads: 4, numKvHeads: 1 });
      const plan = await planModelLoad(dir);
      assert.equal(plan.config.headDim, 32);
      assert.deepEqual(plan.tensors.layers[0]!.q.shape, [128, 64]);
      assert.deepEqual(plan.tensors.layers[0]!.o.shape, [64, 128]);
      assert.deepEqual(plan.tensors.layers[0]!.k.shape, [32, 64]);
      assert.equal(plan.tensors.embed.dtype, 'F16');
      assert.equal(plan.invFreq.length, 16);
    });
  });
});

// --- layouts ------------------------------------------------------------------

describe('planModelLoad: layouts', () => {
  it('loads a sharded model with the same tensors as the single-file one', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(path.join(dir, 'one'), { arch: 'qwen2', seed: 7 });
      await createTinyModel(path.join(dir, 'three'), { arch: 'qwen2', seed: 7, shards: 3 });
      const one = await planModelLoad(path.join(dir, 'one'));
      const three = await planModelLoad(path.join(dir, 'three'));
      assert.deepEqual(
        three.files.map((f) => path.basename(f)),
        ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'],
      );
      const refsOne = allRefs(one);
      const refsThree = allRefs(three);
      assert.equal(new Set(refsThree.map((r) => r.file)).size, 3);
      assert.equal(three.totalBytes, one.totalBytes);
      for (let i = 0; i < refsOne.length; i++) {
        assert.equal(refsThree[i]!.name, refsOne[i]!.name);
        assert.deepEqual(refsThree[i]!.shape, refsOne[i]!.shape);
        assert.deepEqual(await tensorBytes(refsThree[i]!), await tensorBytes(refsOne[i]!), refsOne[i]!.name);
      }
    });
  });

  it('uses model.safetensors when an index is also present, as transformers does', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', shards: 2 });
      await createTinyModel(path.join(dir, 'single'), { arch: 'llama' });
      await writeFile(path.join(dir, 'model.safetensors'), await readFile(path.join(dir, 'single', 'model.safetensors')));
      const plan = await planModelLoad(dir);
      assert.deepEqual(plan.files, [path.join(dir, 'model.safetensors')]);
    });
  });

  it('ties lm_head to the embeddings when tie_word_embeddings is true', async () => {
    await withTempDir(async (dir) => {
      const model = await createTinyModel(dir, { arch: 'qwen3', tie: true });
      assert.ok(!model.tensorNames.includes('lm_head.weight'));
      const plan = await planModelLoad(dir);
      assert.equal(plan.config.tieWordEmbeddings, true);
      assert.equal(plan.tensors.lmHead, null);
    });
  });

  it('ignores a stored lm_head.weight when the config ties it', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', tie: false });
      await editConfig(dir, (c) => (c['tie_word_embeddings'] = true));
      const plan = await planModelLoad(dir);
      assert.equal(plan.tensors.lmHead, null);
    });
  });

  it('refuses an untied model without lm_head.weight', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', tie: true });
      await editConfig(dir, (c) => delete c['tie_word_embeddings']);
      await expectLoadError(planModelLoad(dir), {
        file: 'model.safetensors',
        field: 'lm_head.weight',
        includes: ['tie_word_embeddings'],
      });
    });
  });

  it('reads transformers 4 configs (top-level rope_theta and rope_scaling) like transformers 5 ones', async () => {
    await withTempDir(async (dir) => {
      const ropeScaling = {
        type: 'llama3' as const,
        factor: 32,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 8192,
      };
      const common = { arch: 'llama' as const, ropeTheta: 500000, ropeScaling, maxPositionEmbeddings: 131072 };
      await createTinyModel(path.join(dir, 'v4'), { ...common, configStyle: 'transformers4' });
      await createTinyModel(path.join(dir, 'v5'), { ...common, configStyle: 'transformers5' });
      const v4 = await planModelLoad(path.join(dir, 'v4'));
      const v5 = await planModelLoad(path.join(dir, 'v5'));
      assert.deepEqual(v4.config, v5.config);
      assert.deepEqual(v4.config.ropeScaling, ropeScaling);
      assert.equal(v4.config.ropeTheta, 500000);
      assert.deepEqual(v4.invFreq, v5.invFreq);
    });
  });

  it('takes eos ids from generation_config.json before config.json', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', eosTokenId: 2, generationConfig: { eos_token_id: [2, 7], bos_token_id: 1 } });
      assert.deepEqual((await planModelLoad(dir)).config.eosTokenIds, [2, 7]);
    });
  });

  it('loads checkpoints saved without the "model." prefix', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', tie: true });
      const file = path.join(dir, 'model.safetensors');
      await editWeights(file, (tensors) => tensors.map((t) => ({ ...t, name: t.name.replace(/^model\./, '') })));
      const plan = await planModelLoad(dir);
      assert.equal(plan.tensors.embed.name, 'embed_tokens.weight');
      assert.equal(plan.tensors.layers[1]!.up.name, 'layers.1.mlp.up_proj.weight');
    });
  });

  it('writes the same bytes for the same seed and different bytes for another', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(path.join(dir, 'a'), { arch: 'qwen2', seed: 3 });
      await createTinyModel(path.join(dir, 'b'), { arch: 'qwen2', seed: 3 });
      await createTinyModel(path.join(dir, 'c'), { arch: 'qwen2', seed: 4 });
      const bytes = async (name: string): Promise<Buffer> => readFile(path.join(dir, name, 'model.safetensors'));
      assert.deepEqual(await bytes('a'), await bytes('b'));
      assert.notDeepEqual(await bytes('a'), await bytes('c'));
    });
  });

  it('keeps pickle files unread when safetensors weights are present', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama' });
      await writeFile(path.join(dir, 'pytorch_model.bin'), 'not a pickle');
      const plan = await planModelLoad(dir);
      assert.deepEqual(plan.files, [path.join(dir, 'model.safetensors')]);
    });
  });
});

// --- refusals -------------------------------------------------------------------

describe('planModelLoad: refusals', () => {
  it('refuses a folder without config.json', async () => {
    await withTempDir(async (dir) => {
      await expectLoadError(planModelLoad(dir), { file: 'config.json', includes: ['not a Hugging Face model folder', 'missing'] });
    });
  });

  it('refuses a path that does not exist', async () => {
    await withTempDir(async (dir) => {
      await expectLoadError(planModelLoad(path.join(dir, 'nowhere')), { file: 'nowhere', includes: ['does not exist'] });
    });
  });

  it('refuses a config.json that is not JSON', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'config.json'), '{"model_type": "llama",');
      await expectLoadError(planModelLoad(dir), { file: 'config.json', includes: ['not valid JSON'] });
    });
  });

  // Config edits that must be refused: [what, edit, field, text the message must hold].
  const configCases: Array<[string, Record<string, unknown>, string, string[]]> = [
    [
      'an unsupported model_type',
      { model_type: 'gpt2' },
      'model_type',
      ["model_type 'gpt2' is not supported; LoRA Studio trains llama, mistral, qwen2 and qwen3 models"],
    ],
    ['a missing model_type', { model_type: undefined }, 'model_type', ['model_type is missing']],
    [
      'remote code (auto_map)',
      { auto_map: { AutoModelForCausalLM: 'modeling_custom.CustomForCausalLM' } },
      'auto_map',
      ['never runs code'],
    ],
    [
      'yarn RoPE in rope_parameters',
      { rope_parameters: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 4096, rope_theta: 10000 } },
      'rope_parameters.rope_type',
      ['"yarn"', 'default, linear and llama3'],
    ],
    [
      'dynamic RoPE in a transformers 4 rope_scaling',
      { rope_scaling: { type: 'dynamic', factor: 2 }, rope_theta: 10000 },
      'rope_scaling.type',
      ['"dynamic"'],
    ],
    [
      'per-layer RoPE settings that differ',
      {
        rope_parameters: {
          full_attention: { rope_type: 'default', rope_theta: 1000000 },
          sliding_attention: { rope_type: 'default', rope_theta: 10000 },
        },
      },
      'rope_parameters',
      ['per layer type'],
    ],
    ['a missing hidden_size', { hidden_size: undefined }, 'hidden_size', ['hidden_size is missing']],
    ['a zero num_hidden_layers', { num_hidden_layers: 0 }, 'num_hidden_layers', ['positive integer']],
    ['a fractional intermediate_size', { intermediate_size: 12.5 }, 'intermediate_size', ['positive integer']],
    [
      'hidden_size not divisible by the heads without head_dim',
      { head_dim: undefined, num_attention_heads: 5, num_key_value_heads: 1 },
      'head_dim',
      ['hidden_size 64 is not a multiple of num_attention_heads 5'],
    ],
    [
      'heads not a multiple of kv heads',
      { num_key_value_heads: 3 },
      'num_key_value_heads',
      ['num_attention_heads 4 is not a multiple of num_key_value_heads 3'],
    ],
    [
      'a pre-quantized checkpoint',
      { quantization_config: { quant_method: 'gptq', bits: 4 } },
      'quantization_config',
      ['already quantized (gptq)', 'unquantized'],
    ],
    ['a non-SiLU activation', { hidden_act: 'gelu' }, 'hidden_act', ['"gelu"']],
    [
      'partial rotary embeddings',
      { rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 10000, partial_rotary_factor: 0.5 } },
      'partial_rotary_factor',
      ['0.5'],
    ],
  ];
  for (const [what, edit, field, includes] of configCases) {
    it(`refuses ${what}`, async () => {
      await withTempDir(async (dir) => {
        await createTinyModel(dir, { arch: 'llama', configOverrides: edit });
        await expectLoadError(planModelLoad(dir), { file: 'config.json', field, includes });
      });
    });
  }

  it('refuses a pickle-only folder without opening the pickle', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama' });
      await rm(path.join(dir, 'model.safetensors'));
      await writeFile(path.join(dir, 'pytorch_model.bin'), 'PK\x03\x04 pretend pickle');
      await expectLoadError(planModelLoad(dir), {
        file: 'pytorch_model.bin',
        includes: ['pickle', 'run arbitrary code', 'safetensors', 'convert'],
      });
    });
  });

  it('refuses a folder with no weights at all', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama' });
      await rm(path.join(dir, 'model.safetensors'));
      await expectLoadError(planModelLoad(dir), { file: 'model.safetensors', includes: ['no model weights'] });
    });
  });

  it('refuses a tensor stored as F64', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', dtype: 'F32' });
      const name = 'model.layers.1.mlp.up_proj.weight';
      await editWeights(path.join(dir, 'model.safetensors'), (tensors) =>
        tensors.map((t) => (t.name === name ? { ...t, dtype: 'F64', data: new Float64Array(128 * 64) } : t)),
      );
      await expectLoadError(planModelLoad(dir), {
        file: 'model.safetensors',
        field: name,
        includes: [`Tensor ${name} in model.safetensors has dtype F64, which is not supported; supported: F32, F16, BF16`],
      });
    });
  });

  it('refuses a missing tensor', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'qwen3' });
      const name = 'model.layers.1.self_attn.k_norm.weight';
      await editWeights(path.join(dir, 'model.safetensors'), (tensors) => tensors.filter((t) => t.name !== name));
      await expectLoadError(planModelLoad(dir), { file: 'model.safetensors', field: name, includes: ['missing'] });
    });
  });

  it('refuses a sharded model with a missing shard', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', shards: 3 });
      await rm(path.join(dir, 'model-00002-of-00003.safetensors'));
      await expectLoadError(planModelLoad(dir), {
        file: 'model.safetensors.index.json',
        field: 'model-00002-of-00003.safetensors',
        includes: ['missing'],
      });
    });
  });

  it('refuses an index that points outside the folder', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', shards: 2 });
      const indexFile = path.join(dir, 'model.safetensors.index.json');
      const index = JSON.parse(await readFile(indexFile, 'utf8'));
      index.weight_map['model.norm.weight'] = '../elsewhere.safetensors';
      await writeFile(indexFile, JSON.stringify(index));
      await expectLoadError(planModelLoad(dir), { file: 'model.safetensors.index.json', field: 'model.norm.weight' });
    });
  });

  it('refuses weights whose shape does not match config.json, naming the shard', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', shards: 2, numKvHeads: 2 });
      await editConfig(dir, (c) => (c['num_key_value_heads'] = 1));
      const err = await expectLoadError(planModelLoad(dir), {
        file: 'model-00001-of-00002.safetensors',
        field: 'model.layers.0.self_attn.k_proj.weight',
        includes: [
          'Tensor model.layers.0.self_attn.k_proj.weight in model-00001-of-00002.safetensors has shape [32, 64] ' +
            'but config.json (hidden_size 64, num_key_value_heads 1, head_dim 16) implies [16, 64]',
        ],
      });
      assert.ok(path.isAbsolute(err.file!));
    });
  });

  const damage: Array<[string, (file: string) => Promise<void>, string[], string?]> = [
    ['a file shorter than its header length field', async (f) => truncate(f, 5), ['truncated']],
    ['a header cut short', async (f) => truncate(f, 100), ['truncated', 'header length']],
    [
      'a header that is not JSON',
      async (f) => {
        const bytes = await readFile(f);
        bytes.write('!!!', 8);
        await writeFile(f, bytes);
      },
      ['not valid UTF-8 JSON'],
    ],
    [
      'data cut short',
      async (f) => truncate(f, (await readFile(f)).length - 10),
      ['truncated', 'ends at byte'],
      // the writer's order puts this tensor last
      'model.norm.weight',
    ],
  ];
  for (const [what, corrupt, includes, field] of damage) {
    it(`refuses ${what}`, async () => {
      await withTempDir(async (dir) => {
        await createTinyModel(dir, { arch: 'llama' });
        await corrupt(path.join(dir, 'model.safetensors'));
        await expectLoadError(planModelLoad(dir), { file: 'model.safetensors', field, includes });
      });
    });
  }
});

// --- config details ---------------------------------------------------------------

describe('parseModelConfig', () => {
  const base = {
    model_type: 'llama',
    vocab_size: 100,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
  };
  const parse = (extra: Record<string, unknown>) => parseModelConfig({ ...base, ...extra }, '/m/config.json');

  it('applies transformers defaults per model type', () => {
    const llama = parse({});
    assert.deepEqual([llama.numKvHeads, llama.headDim, llama.maxPositionEmbeddings, llama.bosTokenId], [4, 16, 2048, 1]);
    assert.deepEqual(llama.eosTokenIds, [2]);
    assert.equal(llama.tieWordEmbeddings, false);
    assert.equal(llama.rmsNormEps, 1e-6);
    assert.equal(llama.ropeTheta, 10000);
    // Qwen3Config.head_dim defaults to 128, not hidden_size / heads.
    const qwen3 = parse({ model_type: 'qwen3', num_key_value_heads: 2 });
    assert.equal(qwen3.headDim, 128);
    assert.equal(qwen3.bosTokenId, null);
    assert.deepEqual(qwen3.eosTokenIds, []);
    // MistralConfig.sliding_window defaults to 4096; qwen2 records it only with use_sliding_window.
    assert.equal(parse({ model_type: 'mistral', num_key_value_heads: 2 }).slidingWindow, 4096);
    assert.equal(parse({ model_type: 'mistral', num_key_value_heads: 2, sliding_window: null }).slidingWindow, null);
    const qwen2 = { model_type: 'qwen2', num_key_value_heads: 2, sliding_window: 1024 };
    assert.equal(parse(qwen2).slidingWindow, null);
    assert.equal(parse({ ...qwen2, use_sliding_window: true }).slidingWindow, 1024);
    assert.equal(parse(qwen2).attentionBias, true);
  });

  it('resolves RoPE settings as transformers 5 does', () => {
    // top-level rope_theta fills in a rope_parameters without one
    assert.equal(parse({ rope_parameters: { rope_type: 'default' }, rope_theta: 55555 }).ropeTheta, 55555);
    // rope_parameters' own theta wins over a top-level one
    assert.equal(parse({ rope_parameters: { rope_type: 'default', rope_theta: 7 }, rope_theta: 5 }).ropeTheta, 7);
    // a non-empty rope_scaling replaces rope_parameters entirely
    const linear = parse({ rope_scaling: { type: 'linear', factor: 2 }, rope_parameters: { rope_type: 'default', rope_theta: 1234 } });
    assert.deepEqual(linear.ropeScaling, { type: 'linear', factor: 2 });
    assert.equal(linear.ropeTheta, 10000);
    // llama3's original_max_position_embeddings falls back to a top-level one, then to max_position_embeddings
    const llama3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 };
    const fromTop = parse({ rope_scaling: llama3, original_max_position_embeddings: 1024, max_position_embeddings: 8192 });
    assert.equal(fromTop.ropeScaling?.type === 'llama3' && fromTop.ropeScaling.originalMaxPositionEmbeddings, 1024);
    const fromMax = parse({ rope_parameters: llama3, max_position_embeddings: 4096 });
    assert.equal(fromMax.ropeScaling?.type === 'llama3' && fromMax.ropeScaling.originalMaxPositionEmbeddings, 4096);
    // the same settings for every layer type are accepted
    const nested = parse({
      model_type: 'qwen2',
      num_key_value_heads: 2,
      rope_parameters: {
        full_attention: { rope_type: 'default', rope_theta: 1e6 },
        sliding_attention: { rope_type: 'default', rope_theta: 1e6 },
      },
    });
    assert.equal(nested.ropeTheta, 1e6);
  });

  it('reads eos ids given as a list and dtype under either name', () => {
    const c = parse({ eos_token_id: [5, 6, 5], torch_dtype: 'float16' });
    assert.deepEqual(c.eosTokenIds, [5, 6]);
    assert.equal(c.torchDtype, 'float16');
    assert.equal(parse({ dtype: 'bfloat16', torch_dtype: 'float32' }).torchDtype, 'bfloat16');
  });
});

// --- RoPE frequencies against transformers ------------------------------------------

describe('computeInvFreq', () => {
  // Expected values: LlamaRotaryEmbedding(LlamaConfig(hidden_size=256, num_attention_heads=4,
  // head_dim=D, max_position_embeddings=131072, rope_parameters=...)).inv_freq with
  // transformers 5.24.0 / torch 2.15.0 on CPU, printed as float32 (str(np.float32(x))).
  // Torch's vectorized float32 pow (Sleef, 1-ulp accurate) differs from a correctly
  // rounded pow by up to a few ulps depending on the CPU; the values below agree
  // across torch's default, AVX2 and AVX-512 kernels. The tolerance is 1 ulp.
  type Case = Parameters<typeof computeInvFreq>[0] & { what: string; expected: number[] };
  const cases: Case[] = [
    {
      what: 'default, head_dim 16, theta 10000',
      headDim: 16,
      ropeTheta: 10000,
      ropeScaling: null,
      expected: [1.0, 0.31622776, 0.1, 0.03162278, 0.01, 0.0031622779, 0.001, 0.0003162278],
    },
    {
      what: 'default, head_dim 64, theta 1e6',
      headDim: 64,
      ropeTheta: 1000000,
      ropeScaling: null,
      expected: [
        1.0, 0.64938164, 0.4216965, 0.27384198, 0.17782794, 0.1154782, 0.074989416, 0.048696753, 0.03162278, 0.020535251,
        0.013335215, 0.008659643, 0.0056234132, 0.0036517414, 0.0023713738, 0.0015399265, 0.001, 0.00064938166, 0.0004216965,
        0.00027384196, 0.00017782794, 0.00011547819, 7.4989424e-5, 4.8696755e-5, 3.1622774e-5, 2.053525e-5, 1.3335214e-5,
        8.659644e-6, 5.6234135e-6, 3.6517413e-6, 2.3713737e-6, 1.5399265e-6,
      ],
    },
    {
      // Llama 3.2's settings: all three bands (kept, smoothed, divided) occur.
      what: 'llama3, head_dim 64, theta 500000, factor 32',
      headDim: 64,
      ropeTheta: 500000,
      ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      expected: [
        1.0, 0.6636013, 0.44036663, 0.29222783, 0.19392276, 0.12868738, 0.0853971, 0.05666962, 0.03760603, 0.024955409,
        0.01656044, 0.010989529, 0.007292665, 0.0048394212, 0.003211446, 0.001290548, 0.0004295567, 9.708286e-5,
        1.9461639e-5, 1.29147675e-5, 8.570256e-6, 5.6872323e-6, 3.7740544e-6, 2.5044671e-6, 1.6619674e-6, 1.1028836e-6,
        7.3187493e-7, 4.856731e-7, 3.222933e-7, 2.1387423e-7, 1.419272e-7, 9.4183065e-8,
      ],
    },
    {
      what: 'linear, head_dim 16, theta 10000, factor 4',
      headDim: 16,
      ropeTheta: 10000,
      ropeScaling: { type: 'linear', factor: 4 },
      expected: [0.25, 0.07905694, 0.025, 0.007905695, 0.0025, 0.00079056947, 0.00025, 7.905695e-5],
    },
  ];
  for (const c of cases) {
    it(`matches transformers: ${c.what}`, () => {
      const actual = computeInvFreq(c);
      assert.equal(actual.length, c.expected.length);
      for (let i = 0; i < actual.length; i++) {
        const expected = Math.fround(c.expected[i]!);
        const ulp = Math.fround(expected * (1 + 2 ** -23)) - expected || Number.MIN_VALUE;
        assert.ok(Math.abs(actual[i]! - expected) <= ulp, `inv_freq[${i}] = ${actual[i]}, transformers gives ${expected}`);
      }
    });
  }
});
