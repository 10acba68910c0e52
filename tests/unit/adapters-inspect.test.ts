// describeAdapter: what an adapter folder holds, from its config and header.
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { describeAdapter } from '../../engine/adapters/inspect.ts';
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE } from '../../engine/adapters/peft.ts';
import { ModelLoadError } from '../../engine/model/errors.ts';
import { planModelLoad } from '../../engine/model/folder.ts';

const golden = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'golden');

describe('describeAdapter', () => {
  it('a PEFT adapter on every layer: rank, alpha, modules, parameters, size on disk', async () => {
    const dir = path.join(golden, 'models', 'llama_gqa', 'adapter');
    const d = await describeAdapter(dir);
    // hidden 64, intermediate 160, q 64, k/v 32 outputs; r = 4: per layer
    // q 4·64+64·4, k and v 4·64+32·4, o 4·64+64·4, gate and up 4·64+160·4, down 4·160+64·4
    const perLayer = 512 + 384 + 384 + 512 + 896 + 896 + 896;
    assert.deepEqual(
      [d.rank, d.alpha, d.scale, d.rslora, d.modules, d.numLayers, d.allLayers, d.baseModel, d.parameters, d.dtypes],
      [4, 8, 2, false, 14, 2, true, 'llama_gqa', 2 * perLayer, ['F32']],
    );
    assert.deepEqual(d.targets, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    const size = (await stat(path.join(dir, PEFT_CONFIG_FILE))).size + (await stat(path.join(dir, PEFT_WEIGHTS_FILE))).size;
    assert.equal(d.bytesOnDisk, size);
  });

  it('a layer subset in BF16, checked against its base', async () => {
    const base = (await planModelLoad(path.join(golden, 'models', 'smol_mha'))).config;
    const d = await describeAdapter(path.join(golden, 'peft', 'layers_bf16'), base);
    assert.deepEqual([d.layers, d.modules, d.numLayers, d.allLayers, d.dtypes, d.targets], [[0, 2], 6, 3, false, ['BF16'], ['q_proj', 'o_proj', 'down_proj']]);
  });

  it('an adapter for another base is refused', async () => {
    const base = (await planModelLoad(path.join(golden, 'models', 'qwen3'))).config;
    await assert.rejects(describeAdapter(path.join(golden, 'models', 'llama_gqa', 'adapter'), base), ModelLoadError);
  });
});
