#!/usr/bin/env python3
"""Golden data for the native NF4 kernels, computed by bitsandbytes itself.

Run (once, by hand; the native tests only read the committed output and need
no Python):

    python -m venv .venv && .venv/bin/pip install torch bitsandbytes numpy
    .venv/bin/python scripts/golden/make_nf4_golden.py

with any Python that has torch and bitsandbytes (tested with bitsandbytes
0.50.2, torch 2.15, CPU). It writes tests/golden/nf4/nf4_golden.bin and
tests/golden/nf4/nf4_golden.json (an index for people; the test reads only the
.bin). Each case is quantized with

    quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")

and the file records the input, the packed 4-bit bytes, the first-level fp32
absmax (from the same call with compress_statistics=False), the nested uint8
absmax codes (state.absmax), the nested fp32 scales (state.state2.absmax), the
offset (state.offset), the recovered absmax (dequantize_blockwise + offset) and,
for the smaller cases, dequantize_4bit's output. For every case the script
asserts dequantize_4bit == code[nibble] * recovered absmax, so the recovered
absmax pins the dequantized values of the larger cases too.

torch runs on one thread here: torch's fp32 sum (used for the offset) adds in
a thread-dependent order once a tensor has more than 32768 blocks.

Layout of nf4_golden.bin (little-endian):
    char[8] "LSNF4GD1"; u32 case_count
    f32[16] NF4 code (get_4bit_type("nf4")); f32[256] create_dynamic_map()
    per case:
      u32 name_len; name (utf-8); i64 rows; i64 cols
      u32 input_kind (0: f32 values, 1: bf16 bit patterns as u16)
      input[rows*cols]; u8 packed[n/2]; f32 absmax[nb]; u8 absmax_q[nb]
      f32 scale[ceil(nb/256)]; f32 offset; f32 absmax_recovered[nb]
      u32 has_dequant; f32 dequant[n] if has_dequant
"""
import json
import os
import struct

import numpy as np
import torch
import bitsandbytes.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "tests", "golden", "nf4")


def f32(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def to_bf16_values(a):
    """Round fp32 values to bf16 (nearest even) and return them as fp32."""
    t = torch.from_numpy(f32(a)).to(torch.bfloat16).to(torch.float32)
    return t.numpy()


def special_3x128():
    rng = np.random.default_rng(2)
    blocks = []
    blocks.append(np.zeros(64))  # all zero: absmax 0
    b = rng.standard_normal(64)
    b[::5] = 0.0
    b[7] = -3.5  # the block's absmax is a negative value
    b[8] = 3.5 * 0.999
    blocks.append(b)
    blocks.append(rng.standard_normal(64) * 1e-30)  # tiny
    blocks.append(rng.standard_normal(64) * 1e30)  # huge
    code = F.get_4bit_type("nf4", device="cpu").numpy().astype(np.float32)
    mids = ((code[:-1] + code[1:]) / np.float32(2)).astype(np.float32)
    ties = [1.0, -1.0] + list(mids) + [np.nextafter(m, np.float32(2)) for m in mids]
    ties += [np.nextafter(m, np.float32(-2)) for m in mids]
    ties += list(rng.uniform(-0.99, 0.99, size=64 - len(ties)))
    blocks.append(np.array(ties, dtype=np.float32))  # exact midpoints: ties
    blocks.append(rng.standard_normal(64) * 1e-40)  # subnormal: absmax < 1e-38
    return f32(np.concatenate(blocks)).reshape(3, 128)


def cases():
    rng = np.random.default_rng(0)
    yield "normal_64x64", f32(rng.standard_normal((64, 64))), 0, True
    yield "special_3x128", special_3x128(), 0, True
    mags = 10.0 ** rng.uniform(-6, 6, size=(32, 1))
    yield "magnitudes_32x64", f32(rng.standard_normal((32, 64)) * mags), 0, True
    const = rng.uniform(-0.5, 0.5, size=(8, 64))
    const[:, 3] = 0.5
    const[::2, 3] = -0.5
    yield "constant_absmax_8x64", f32(const), 0, True  # nested scale 0
    yield "single_block_1x64", f32(rng.standard_normal((1, 64))), 0, True
    # Absmax values crowded around their mean: the nested codes fall where the
    # dynamic code is denser than bitsandbytes' 65536-point lookup grid, so the
    # grid (not the nearest code) decides them.
    near = rng.uniform(-0.5, 0.5, size=(64, 64))
    near[:, 0] = (1.0 + rng.standard_normal(64) * 3e-4) * np.where(rng.uniform(size=64) < 0.5, -1, 1)
    near[5, 9] = 3.0  # one block at 3 and two at 0 keep the mean near 1
    near[11:13, :] = 0.0
    yield "absmax_near_mean_64x64", f32(near), 0, False
    yield "blocks333_9x2368", to_bf16_values(rng.standard_normal((9, 2368)) * 0.02), 1, False
    heavy = rng.standard_normal((600, 64)) * np.exp(rng.standard_normal((600, 1)))
    yield "blocks600_600x64", to_bf16_values(heavy * 0.05), 1, False


def main():
    torch.set_num_threads(1)
    nf4_code = F.get_4bit_type("nf4", device="cpu").to(torch.float32).numpy()
    dyn_code = F.create_dynamic_map(signed=True).to(torch.float32).numpy()
    blob = bytearray(b"LSNF4GD1")
    items = list(cases())
    blob += struct.pack("<I", len(items))
    blob += f32(nf4_code).tobytes() + f32(dyn_code).tobytes()
    index = {"file": "nf4_golden.bin", "bitsandbytes": getattr(__import__("bitsandbytes"), "__version__", "?"),
             "torch": torch.__version__, "cases": []}
    for name, w, kind, with_dequant in items:
        rows, cols = w.shape
        n = rows * cols
        t = torch.from_numpy(w.copy())
        packed, state = F.quantize_4bit(t, blocksize=64, compress_statistics=True, quant_type="nf4")
        packed_plain, state_plain = F.quantize_4bit(t, blocksize=64, compress_statistics=False, quant_type="nf4")
        assert torch.equal(packed, packed_plain)
        deq = F.dequantize_4bit(packed, state).reshape(-1).numpy()
        absmax_rec = (F.dequantize_blockwise(state.absmax, state.state2) + state.offset).numpy()
        nib = packed.reshape(-1).numpy()
        idx = np.empty(n, dtype=np.int64)
        idx[0::2] = nib >> 4
        idx[1::2] = nib & 15
        expect = (nf4_code[idx].reshape(-1, 64) * absmax_rec[:, None]).astype(np.float32).reshape(-1)
        assert np.array_equal(expect.view(np.uint32), f32(deq).view(np.uint32)), name
        nb = n // 64
        name_b = name.encode()
        blob += struct.pack("<I", len(name_b)) + name_b + struct.pack("<qqI", rows, cols, kind)
        if kind == 0:
            blob += f32(w).tobytes()
        else:
            blob += (f32(w).view(np.uint32) >> 16).astype("<u2").tobytes()
        blob += nib.astype(np.uint8).tobytes()
        blob += f32(state_plain.absmax).tobytes()
        blob += state.absmax.numpy().astype(np.uint8).tobytes()
        blob += f32(state.state2.absmax).tobytes()
        blob += struct.pack("<f", float(state.offset))
        blob += f32(absmax_rec).tobytes()
        blob += struct.pack("<I", 1 if with_dequant else 0)
        if with_dequant:
            blob += f32(deq).tobytes()
        index["cases"].append({"name": name, "rows": rows, "cols": cols, "blocks": nb,
                               "absmax_groups": len(state.state2.absmax),
                               "input": "f32" if kind == 0 else "bf16", "dequant_stored": with_dequant,
                               "offset": float(state.offset)})
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "nf4_golden.bin"), "wb") as f:
        f.write(bytes(blob))
    with open(os.path.join(OUT_DIR, "nf4_golden.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print(f"wrote {len(blob)} bytes, {len(items)} cases")


if __name__ == "__main__":
    main()
