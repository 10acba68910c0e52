// The GPU catalogue: forgiving lookup by name, and its figures.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GPU_CATALOGUE, findGpu, similarGpus } from '../../engine/estimate/gpus.ts';

const GiB = 1024 ** 3;

describe('GPU catalogue', () => {
  const cases: [string, string | null, number | null][] = [
    ['4090', 'GeForce RTX 4090', 24],
    ['RTX 4090', 'GeForce RTX 4090', 24],
    ['NVIDIA GeForce RTX 4090', 'GeForce RTX 4090', 24],
    ['rtx 3060 12gb', 'GeForce RTX 3060', 12],
    ['rtx 3060 8gb', 'GeForce RTX 3060 8GB', 8],
    ['3060', 'GeForce RTX 3060', 12],
    ['4060ti', 'GeForce RTX 4060 Ti', 8],
    ['4060 Ti 16GB', 'GeForce RTX 4060 Ti 16GB', 16],
    ['RTX 4070 Ti Super', 'GeForce RTX 4070 Ti Super', 16],
    ['4070 super', 'GeForce RTX 4070 Super', 12],
    ['NVIDIA GeForce RTX 4060 Laptop GPU', 'GeForce RTX 4060 Laptop', 8],
    ['5090', 'GeForce RTX 5090', 32],
    ['2080 ti', 'GeForce RTX 2080 Ti', 11],
    ['Titan RTX', 'Titan RTX', 24],
    ['rx 7900xtx', 'Radeon RX 7900 XTX', 24],
    ['AMD Radeon RX 7900 XT', 'Radeon RX 7900 XT', 20],
    ['6700 xt', 'Radeon RX 6700 XT', 12],
    ['RX 9070 XT', 'Radeon RX 9070 XT', 16],
    ['9060 xt 8gb', 'Radeon RX 9060 XT 8GB', 8],
    ['4090 48gb', null, null],
    ['4095', null, null],
    ['a toaster', null, null],
  ];
  for (const [query, name, gb] of cases) {
    it(`'${query}' → ${name ?? 'no card'}`, () => {
      const g = findGpu(query);
      assert.equal(g?.name ?? null, name);
      if (gb !== null) assert.equal(g!.vramBytes, gb * GiB);
    });
  }

  it('covers RTX 20/30/40/50 (with laptops) and Radeon RX 6000/7000/9000', () => {
    for (const series of ['20', '30', '40', '50'])
      assert.ok(GPU_CATALOGUE.some((g) => g.vendor === 'nvidia' && g.name.includes(`RTX ${series}`)), `RTX ${series}`);
    assert.ok(GPU_CATALOGUE.some((g) => g.laptop));
    for (const series of ['6', '7', '9']) assert.ok(GPU_CATALOGUE.some((g) => g.vendor === 'amd' && g.name.includes(`RX ${series}`)), `RX ${series}000`);
    const names = GPU_CATALOGUE.map((g) => g.name);
    assert.equal(new Set(names).size, names.length, 'names are unique');
    for (const g of GPU_CATALOGUE) {
      assert.ok(g.vramBytes >= 4 * GiB && g.vramBytes <= 32 * GiB, g.name);
      assert.equal(g.vendor === 'nvidia', g.computeCapability !== null, g.name);
      assert.equal(findGpu(g.name)?.name, g.name, `${g.name} finds itself`);
    }
  });

  it('suggests cards of the same model number', () => {
    assert.ok(similarGpus('3060 16gb').every((s) => s.includes('3060')));
    assert.ok(similarGpus('nothing').length > 0);
  });
});
