import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../engine/model/half.ts';
import { readSafetensorsHeader, writeSafetensors, type TensorToWrite } from '../../engine/model/safetensors.ts';
import { expectLoadError, withTempDir } from './helpers/model-fixtures.ts';

// A safetensors file from raw parts, for damaged-file cases.
function rawFile(header: string | object, data: Uint8Array, lengthField?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(lengthField ?? BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

const sample: TensorToWrite[] = [
  { name: 'w', dtype: 'BF16', shape: [2, 2], data: new Uint16Array([0x3f80, 0xc000, 0x3f00, 0x4040]) },
  { name: 'b', dtype: 'F32', shape: [3], data: new Float32Array([1.5, -0.25, 4]) },
  { name: 'i', dtype: 'I32', shape: [2], data: new Int32Array([7, -1]) },
  { name: 'u', dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
];

// The same four tensors written by the reference implementation (safetensors
// 0.8.0, Python):
//   save_file({'w': torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.bfloat16),
//              'b': torch.tensor([1.5, -0.25, 4.0]), 'i': torch.tensor([7, -1], dtype=torch.int32),
//              'u': torch.tensor([1, 2, 3], dtype=torch.uint8)}, path, metadata={'format': 'pt'})
const REFERENCE_HEX =
  '00010000000000007b225f5f6d657461646174615f5f223a7b22666f726d6174223a227074227d2c2262223a7b226474797065223a22463332' +
  '222c227368617065223a5b335d2c22646174615f6f666673657473223a5b302c31325d7d2c2269223a7b226474797065223a22493332222c22' +
  '7368617065223a5b325d2c22646174615f6f666673657473223a5b31322c32305d7d2c2277223a7b226474797065223a2242463136222c2273' +
  '68617065223a5b322c325d2c22646174615f6f666673657473223a5b32302c32385d7d2c2275223a7b226474797065223a225538222c227368' +
  '617065223a5b335d2c22646174615f6f666673657473223a5b32382c33315d7d7d2020200000c03f000080be0000804007000000ffffffff80' +
  '3f00c0003f4040010203';

describe('safetensors writer', () => {
  it('writes the same bytes as the reference implementation', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'sample.safetensors');
      await writeSafetensors(file, sample, { format: 'pt' });
      assert.equal((await readFile(file)).toString('hex'), REFERENCE_HEX);
    });
  });

  it('round-trips through the reader with absolute, aligned offsets', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'sample.safetensors');
      await writeSafetensors(file, sample, { format: 'pt', note: 'kept' });
      const header = await readSafetensorsHeader(file);
      const bytes = await readFile(file);
      assert.equal(header.file, file);
      assert.equal(header.fileSize, bytes.length);
      assert.equal(header.headerBytes % 8, 0);
      assert.equal(header.dataStart, 8 + header.headerBytes);
      assert.deepEqual(header.metadata, { format: 'pt', note: 'kept' });
      assert.deepEqual([...header.tensors.keys()].sort(), ['b', 'i', 'u', 'w']);
      for (const t of sample) {
        const info = header.tensors.get(t.name)!;
        assert.equal(info.dtype, t.dtype);
        assert.deepEqual(info.shape, t.shape);
        assert.equal(info.byteLength, t.data.byteLength);
        const elementBytes = t.data.byteLength / t.shape.reduce((a, b) => a * b, 1);
        assert.equal(info.offset % elementBytes, 0, `${t.name} is not aligned`);
        const expected = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
        assert.deepEqual(bytes.subarray(info.offset, info.offset + info.byteLength), expected);
      }
    });
  });

  it('replaces a file atomically and leaves no temp file behind', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'x.safetensors');
      await writeFile(file, 'old content');
      await writeSafetensors(file, [{ name: 'a', dtype: 'F32', shape: [1], data: new Float32Array([2]) }]);
      assert.deepEqual(await readdir(dir), ['x.safetensors']);
      assert.equal((await readSafetensorsHeader(file)).tensors.get('a')?.byteLength, 4);
    });
  });

  it('refuses data that does not match the shape', async () => {
    await withTempDir(async (dir) => {
      await assert.rejects(
        writeSafetensors(path.join(dir, 'x.safetensors'), [{ name: 'a', dtype: 'F32', shape: [3], data: new Float32Array(2) }]),
        /shape \[3\]/,
      );
    });
  });
});

describe('safetensors header reader', () => {
  const tensor = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const data8 = new Uint8Array(8);

  // Each case writes `bytes` as bad.safetensors and expects a ModelLoadError
  // naming the file, the tensor (when there is one) and the given text.
  const cases: Array<{ what: string; bytes: Buffer; field?: string; includes: (string | RegExp)[] }> = [
    { what: 'a file shorter than 8 bytes', bytes: Buffer.from([1, 2, 3]), includes: ['truncated', '3 bytes'] },
    {
      what: 'a header length beyond the file',
      bytes: rawFile({ a: tensor }, data8, 5000n),
      includes: ['truncated', '5000 bytes'],
    },
    {
      what: 'an absurd header length',
      bytes: rawFile({ a: tensor }, data8, 1n << 40n),
      includes: ['100000000-byte limit'],
    },
    { what: 'a header that is not JSON', bytes: rawFile('{"a": {"dtype": ', data8), includes: ['not valid UTF-8 JSON'] },
    { what: 'a header that is not an object', bytes: rawFile('[1, 2]', new Uint8Array(0)), includes: ['not a JSON object'] },
    {
      what: 'a tensor without dtype',
      bytes: rawFile({ a: { shape: [2], data_offsets: [0, 8] } }, data8),
      field: 'a',
      includes: ['no "dtype"'],
    },
    {
      what: 'a tensor without shape',
      bytes: rawFile({ a: { dtype: 'F32', data_offsets: [0, 8] } }, data8),
      field: 'a',
      includes: ['"shape"'],
    },
    {
      what: 'a tensor without data_offsets',
      bytes: rawFile({ a: { dtype: 'F32', shape: [2] } }, data8),
      field: 'a',
      includes: ['"data_offsets"'],
    },
    {
      what: 'reversed data_offsets',
      bytes: rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, data8),
      field: 'a',
      includes: ['begin <= end'],
    },
    {
      what: 'a dtype the format does not define',
      bytes: rawFile({ a: { dtype: 'F128', shape: [2], data_offsets: [0, 8] } }, data8),
      field: 'a',
      includes: ['"F128"'],
    },
    {
      what: 'a byte length that does not match the shape',
      bytes: rawFile({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data8),
      field: 'a',
      includes: ['take 12 bytes', 'span 8 bytes'],
    },
    {
      what: 'data beyond the end of the file (truncated data)',
      bytes: rawFile({ a: tensor, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, data8),
      field: 'b',
      includes: ['truncated', 'Download'],
    },
    {
      what: 'overlapping tensors',
      bytes: rawFile({ a: tensor, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)),
      field: 'b',
      includes: ['overlap'],
    },
    {
      what: 'a gap between tensors',
      bytes: rawFile({ a: tensor, b: { dtype: 'F32', shape: [1], data_offsets: [12, 16] } }, new Uint8Array(16)),
      field: 'b',
      includes: ['4 unused bytes'],
    },
    { what: 'bytes after the last tensor', bytes: rawFile({ a: tensor }, new Uint8Array(12)), includes: ['4 bytes follow'] },
    {
      what: 'non-string metadata',
      bytes: rawFile({ __metadata__: { n: 1 }, a: tensor }, data8),
      field: '__metadata__',
      includes: ['map names to strings'],
    },
  ];

  for (const c of cases) {
    it(`refuses ${c.what}`, async () => {
      await withTempDir(async (dir) => {
        const file = path.join(dir, 'bad.safetensors');
        await writeFile(file, c.bytes);
        await expectLoadError(readSafetensorsHeader(file), { file: 'bad.safetensors', field: c.field, includes: c.includes });
      });
    });
  }

  it('reads dtypes the engine does not load, so callers can name them', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'mixed.safetensors');
      await writeSafetensors(file, [
        { name: 'f64', dtype: 'F64', shape: [2], data: new Float64Array([1, 2]) },
        { name: 'ids', dtype: 'I64', shape: [1], data: new BigInt64Array([5n]) },
      ]);
      const header = await readSafetensorsHeader(file);
      assert.equal(header.tensors.get('f64')?.dtype, 'F64');
      assert.equal(header.tensors.get('ids')?.dtype, 'I64');
      assert.equal(header.metadata, null);
    });
  });

  it('accepts an empty file body (no tensors)', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'empty.safetensors');
      await writeFile(file, rawFile('{}', new Uint8Array(0)));
      assert.equal((await readSafetensorsHeader(file)).tensors.size, 0);
    });
  });

  it('names the file when it cannot be opened', async () => {
    await withTempDir(async (dir) => {
      await expectLoadError(readSafetensorsHeader(path.join(dir, 'absent.safetensors')), { file: 'absent.safetensors' });
    });
  });
});

describe('16-bit float conversion', () => {
  // Bit patterns as torch.tensor(x, dtype=torch.float32).to(dtype).view(torch.int16) gives them.
  const table: Array<[number, number, number]> = [
    // value, F16 bits, BF16 bits
    [1, 0x3c00, 0x3f80],
    [-2, 0xc000, 0xc000],
    [1 / 3, 0x3555, 0x3eab],
    [65504, 0x7bff, 0x4780],
    [65520, 0x7c00, 0x4780], // rounds up to inf in F16
    [2 ** -24, 0x0001, 0x3380], // smallest F16 subnormal
    [2 ** -25, 0x0000, 0x3300], // a tie, rounds to even (0)
    [3 * 2 ** -26, 0x0001, 0x3340],
    [1 + 2 ** -11, 0x3c00, 0x3f80], // F16 tie to even
    [1 + 3 * 2 ** -11, 0x3c02, 0x3f80],
    [Infinity, 0x7c00, 0x7f80],
    [-0, 0x8000, 0x8000],
  ];
  for (const [value, f16, bf16] of table) {
    it(`converts ${value}`, () => {
      assert.equal(f32ToF16Bits(value), f16);
      assert.equal(f32ToBf16Bits(value), bf16);
    });
  }

  it('maps NaN to NaN and decodes back', () => {
    assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
    assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
    assert.equal(f16BitsToF32(0x3555), 0.333251953125);
    assert.equal(bf16BitsToF32(0x3eab), 0.333984375);
    assert.equal(f16BitsToF32(0x0001), 2 ** -24);
  });
});
