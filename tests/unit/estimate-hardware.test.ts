// Hardware detection: the nvidia-smi parser on recorded outputs, and the real
// detection with no GPU, with nvidia-smi missing, failing, answering through a
// script on PATH, or hanging (it must time out, not hang).
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { detectHardware, parseNvidiaSmi, queryNvidiaSmi, queryOtherGpus } from '../../engine/estimate/hardware.ts';

const MiB = 1024 * 1024;

// Output of `nvidia-smi --query-gpu=index,name,memory.total,memory.free,driver_version --format=csv,noheader,nounits`.
const TWO_GPUS = '0, NVIDIA GeForce RTX 4090, 24564, 23671, 550.54.14\n1, NVIDIA GeForce RTX 3060, 12288, 12036, 550.54.14\n';
const WINDOWS = '0, NVIDIA GeForce RTX 4070 Laptop GPU, 8188, 7820, 566.03\r\n';
const DATACENTER = '0, NVIDIA H100 80GB HBM3, 81559, 81008, 535.104.12\n';
const NOT_SUPPORTED = '0, NVIDIA GeForce RTX 3080, 10240, [N/A], [N/A]\n0, NVIDIA GB10, [N/A], [N/A], 580.95.05\n';

describe('nvidia-smi output', () => {
  it('parses one GPU per line with memory in MiB', () => {
    const gpus = parseNvidiaSmi(TWO_GPUS);
    assert.equal(gpus.length, 2);
    assert.deepEqual(gpus[0], { index: 0, name: 'NVIDIA GeForce RTX 4090', vendor: 'nvidia', totalBytes: 24564 * MiB, freeBytes: 23671 * MiB, driver: '550.54.14', source: 'nvidia-smi' });
    assert.equal(gpus[1]!.name, 'NVIDIA GeForce RTX 3060');
    assert.equal(gpus[1]!.totalBytes, 12288 * MiB);
  });

  it('reads Windows line endings and data-centre names', () => {
    assert.equal(parseNvidiaSmi(WINDOWS)[0]!.name, 'NVIDIA GeForce RTX 4070 Laptop GPU');
    assert.equal(parseNvidiaSmi(WINDOWS)[0]!.driver, '566.03');
    assert.equal(parseNvidiaSmi(DATACENTER)[0]!.totalBytes, 81559 * MiB);
  });

  it('turns values nvidia-smi cannot read into null, and skips a GPU without a total', () => {
    const gpus = parseNvidiaSmi(NOT_SUPPORTED);
    assert.equal(gpus.length, 1);
    assert.equal(gpus[0]!.freeBytes, null);
    assert.equal(gpus[0]!.driver, null);
  });

  it('ignores empty and malformed lines', () => {
    assert.deepEqual(parseNvidiaSmi(''), []);
    assert.deepEqual(parseNvidiaSmi('No devices were found\n'), []);
    assert.equal(parseNvidiaSmi(`\n${DATACENTER}garbage\n`).length, 1);
  });
});

describe('detection on this machine', () => {
  let dir = '';
  let savedPath = '';
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ls-hw-'));
    savedPath = process.env.PATH ?? '';
  });
  after(async () => {
    process.env.PATH = savedPath;
    await rm(dir, { recursive: true, force: true });
  });

  async function fakeSmi(name: string, body: string): Promise<string> {
    const sub = path.join(dir, name);
    await import('node:fs/promises').then((fs) => fs.mkdir(sub, { recursive: true }));
    const file = path.join(sub, 'nvidia-smi');
    await writeFile(file, `#!/bin/sh\n${body}\n`);
    await chmod(file, 0o755);
    return sub;
  }

  it('reports RAM and CPU and never throws without nvidia-smi', async () => {
    process.env.PATH = '/nonexistent-dir';
    try {
      const hw = await detectHardware({ timeoutMs: 3000, otherGpus: false });
      assert.ok(hw.ramTotalBytes > 0 && hw.ramAvailableBytes > 0 && hw.ramAvailableBytes <= hw.ramTotalBytes);
      assert.ok(hw.cpuThreads >= 1);
      assert.deepEqual(hw.gpus, []);
      assert.match(hw.notes.join('\n'), /nvidia-smi is not installed/);
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it('reads the GPUs a nvidia-smi on PATH lists', { skip: process.platform === 'win32' }, async () => {
    process.env.PATH = `${await fakeSmi('answers', `printf '${TWO_GPUS.replace(/\n/g, '\\n')}'`)}${path.delimiter}${savedPath}`;
    try {
      const hw = await detectHardware({ timeoutMs: 5000, otherGpus: false });
      assert.deepEqual(hw.gpus.map((g) => [g.index, g.name, g.totalBytes]), [[0, 'NVIDIA GeForce RTX 4090', 24564 * MiB], [1, 'NVIDIA GeForce RTX 3060', 12288 * MiB]]);
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it('notes a nvidia-smi that fails (no driver)', { skip: process.platform === 'win32' }, async () => {
    const bin = await fakeSmi('fails', `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2; exit 9`);
    const r = await queryNvidiaSmi({ command: path.join(bin, 'nvidia-smi'), timeoutMs: 5000 });
    assert.deepEqual(r.gpus, []);
    assert.match(r.note ?? '', /failed \(exit 9\): NVIDIA-SMI has failed/);
  });

  it('times out a nvidia-smi that hangs, even when its child holds the output open', { skip: process.platform === 'win32' }, async () => {
    process.env.PATH = `${await fakeSmi('hangs', 'sleep 30')}${path.delimiter}${savedPath}`;
    try {
      const start = Date.now();
      const hw = await detectHardware({ timeoutMs: 700 });
      const elapsed = Date.now() - start;
      assert.ok(elapsed < 10_000, `detection returned after ${elapsed} ms`);
      assert.deepEqual(hw.gpus, []);
      assert.match(hw.notes.join('\n'), /nvidia-smi did not answer within 0.7 s/);
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it('asks systeminformation for other GPUs in a child process, within the timeout', async () => {
    const start = Date.now();
    const r = await queryOtherGpus(20_000, true);
    assert.ok(Date.now() - start < 25_000);
    assert.ok(Array.isArray(r.gpus));
    for (const g of r.gpus) assert.ok(g.totalBytes >= 1024 * MiB && g.source === 'systeminformation');
  });
});
