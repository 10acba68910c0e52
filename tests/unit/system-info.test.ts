// This machine's description: runs here (no GPU) without throwing and says
// what the CPU can train; with a GPU reported by an nvidia-smi stand-in on
// PATH, the GPU comes first and its line names the largest models that fit.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { EstimateDevice } from '../../engine/estimate/device.ts';
import { SUGGESTED_MODELS, fitOn, sizeLabel, suggestFor } from '../../main/models/suggested.ts';
import { GPU_TRAINING_AVAILABLE, capacityLine, diskSpace, getSystemInfo, summarySentence } from '../../main/system/system.ts';

const GiB = 1024 ** 3;
let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'lora-studio-system-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('system info', () => {
  it('describes this machine without throwing, and its summary speaks of the CPU', async () => {
    const info = await getSystemInfo({ appDataDir: dir, detect: { nvidiaSmi: path.join(dir, 'no-such-nvidia-smi'), otherGpus: false } });
    assert.ok(info.cpu.threads >= 1 && info.cpu.model.length > 0);
    if (info.cpu.physicalCores !== null) assert.ok(info.cpu.physicalCores >= 1 && info.cpu.physicalCores <= info.cpu.threads);
    assert.ok(info.ram.totalBytes > 0 && info.ram.availableBytes <= info.ram.totalBytes);
    assert.deepEqual(info.gpus, []);
    assert.equal(info.devices.length, 1);
    assert.equal(info.devices[0]!.kind, 'cpu');
    assert.equal(info.preferred, 0);
    assert.ok(info.disk && info.disk.freeBytes > 0 && info.disk.freeBytes <= info.disk.totalBytes);
    assert.match(info.summary[0]!, /^On the CPU: /);
    assert.ok(info.summary.some((l) => /No GPU was detected \(.*no-such-nvidia-smi is not installed/.test(l)), info.summary.join('\n'));
    assert.match(summarySentence(info), /^This machine can train: on the CPU: small models only .*\.$/);
  });

  it('puts a detected GPU first, and says the largest models that fit it', async () => {
    const smi = path.join(dir, 'nvidia-smi');
    await writeFile(smi, '#!/bin/sh\necho "0, NVIDIA GeForce RTX 4060, 8188, 7900, 560.35.03"\n');
    await chmod(smi, 0o755);
    const info = await getSystemInfo({ appDataDir: dir, detect: { nvidiaSmi: smi, otherGpus: false } });
    assert.equal(info.gpus.length, 1);
    assert.deepEqual(info.devices.map((d) => d.kind), ['gpu', 'cpu']);
    // Runs train on the device the engine has a backend for.
    assert.equal(info.preferred, GPU_TRAINING_AVAILABLE ? 0 : 1);
    if (!GPU_TRAINING_AVAILABLE) assert.ok(info.summary.some((l) => /^Training runs on the CPU in this version/.test(l)));
    const gpu = info.devices[0]!;
    assert.equal(gpu.availableBytes, 7900 * 1024 * 1024);
    assert.equal(gpu.computeCapability, 8.9);
    const line = info.summary[0]!;
    assert.match(line, /on the NVIDIA GeForce RTX 4060 \(/);
    // The sizes named are the largest suggested models that fit, by the estimator.
    for (const method of ['lora', 'qlora'] as const) {
      const fitting = SUGGESTED_MODELS.filter((m) => fitOn(m.config, m.name, gpu, method) !== null);
      const largest = fitting[fitting.length - 1];
      if (largest) assert.ok(line.includes(`up to ${sizeLabel(largest.parameterCount)}`), `${method}: ${line}`);
    }
    assert.match(line, /QLoRA up to \S+ at 1024 tokens/);
    assert.ok(!info.summary.some((l) => l.startsWith('No GPU')));
    // The suggestions for this machine use its GPU first.
    const llama8b = suggestFor(info).find((s) => s.model.repo === 'meta-llama/Llama-3.1-8B-Instruct')!;
    assert.equal(llama8b.best?.device ?? null, line.includes('QLoRA up to 8B') ? gpu.name : null);
  });
});

describe('capacity lines', () => {
  const cpu = (availableBytes: number): EstimateDevice => ({
    kind: 'cpu', name: 'CPU (test)', totalBytes: 64 * GiB, availableBytes, source: 'this machine', vendor: null, computeCapability: null, threads: 4,
  });
  it('keeps a CPU with plenty of RAM to small models', () => {
    assert.match(capacityLine(cpu(60 * GiB)), /^On the CPU: small models only \(LoRA up to 1\.7B at 1024 tokens; larger models train too slowly/);
  });
  it('says when even the smallest model does not fit', () => {
    assert.match(capacityLine(cpu(64 * 1024 * 1024)), /not enough free memory .* for the smallest suggested model/);
  });
  it('gives the free disk of a folder, and null for one that does not exist', async () => {
    assert.ok((await diskSpace(dir))!.totalBytes > 0);
    assert.equal(await diskSpace(path.join(dir, 'missing', 'deeper')), null);
  });
});
