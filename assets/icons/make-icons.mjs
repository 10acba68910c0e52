// Draws the app icon as PNG files (no image tools needed): a rounded square in
// the app's indigo with a white "L" and a small low-rank "adapter" bar beside it.
// electron-builder makes the Windows .ico and macOS .icns from icon.png (512×512).
//
// Usage: node assets/icons/make-icons.mjs   → assets/icons/icon.png, 256x256.png, 512x512.png
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** RGBA pixel of the icon at (x, y) in a size×size image. */
function pixel(x, y, size) {
  const u = (x + 0.5) / size;
  const v = (y + 0.5) / size;
  // Rounded square, 6% margin, corner radius 18% of the side.
  const m = 0.06, r = 0.18;
  const cx = Math.min(Math.max(u, m + r), 1 - m - r);
  const cy = Math.min(Math.max(v, m + r), 1 - m - r);
  const inside = Math.hypot(u - cx, v - cy) <= r;
  if (!inside) return [0, 0, 0, 0];
  const white = [255, 255, 255, 255];
  // The "L": a vertical and a horizontal stroke.
  if (u >= 0.26 && u <= 0.38 && v >= 0.22 && v <= 0.76) return white;
  if (u >= 0.26 && u <= 0.62 && v >= 0.64 && v <= 0.76) return white;
  // The adapter: a thin bar beside the L, in a lighter tone.
  if (u >= 0.68 && u <= 0.74 && v >= 0.22 && v <= 0.76) return [199, 210, 254, 255];
  // Indigo, slightly lighter towards the top.
  const t = v;
  return [Math.round(79 - 20 * t), Math.round(70 - 25 * t), Math.round(229 - 40 * t), 255];
}

export function iconPng(size) {
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0; // filter: none
    for (let x = 0; x < size; x++) raw.set(pixel(x, y, size), y * (size * 4 + 1) + 1 + x * 4);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // colour type RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(path.join(here, 'icon.png'), iconPng(512));
  writeFileSync(path.join(here, '512x512.png'), iconPng(512));
  writeFileSync(path.join(here, '256x256.png'), iconPng(256));
  console.log('wrote icon.png, 512x512.png, 256x256.png');
}
