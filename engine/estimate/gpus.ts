// A catalogue of common consumer GPUs and their memory, so a run can be
// planned for a card this machine does not have ("will it fit on a 4090?").
// VRAM is the manufacturer's figure (binary gigabytes: an "8 GB" card has
// 8 GiB). `computeCapability` (NVIDIA) picks the cuBLAS workspace size in
// estimate.ts; AMD cards have none.
//
// Lookup is forgiving: "4090", "RTX 4070 Ti Super", "rtx 3060 12gb",
// "NVIDIA GeForce RTX 4060 Laptop GPU", "rx 7900xtx" all resolve.

export type GpuVendor = 'nvidia' | 'amd';

export interface CatalogueGpu {
  name: string; // as sold, e.g. "GeForce RTX 4090"
  vendor: GpuVendor;
  vramBytes: number;
  laptop: boolean;
  computeCapability: number | null; // NVIDIA only (7.5 Turing, 8.6 Ampere, 8.9 Ada, 12.0 Blackwell)
}

const GiB = 1024 ** 3;

function nv(name: string, gb: number, cc: number, laptop = false): CatalogueGpu {
  return { name: `GeForce RTX ${name}`, vendor: 'nvidia', vramBytes: gb * GiB, laptop, computeCapability: cc };
}
function amd(name: string, gb: number): CatalogueGpu {
  return { name: `Radeon RX ${name}`, vendor: 'amd', vramBytes: gb * GiB, laptop: false, computeCapability: null };
}

// Where a model comes with several memory sizes, the first listed is the one
// a bare name means (the most common variant).
export const GPU_CATALOGUE: readonly CatalogueGpu[] = [
  // NVIDIA RTX 20 (Turing)
  nv('2060', 6, 7.5), nv('2060 12GB', 12, 7.5), nv('2060 Super', 8, 7.5), nv('2070', 8, 7.5),
  nv('2070 Super', 8, 7.5), nv('2080', 8, 7.5), nv('2080 Super', 8, 7.5), nv('2080 Ti', 11, 7.5),
  { name: 'Titan RTX', vendor: 'nvidia', vramBytes: 24 * GiB, laptop: false, computeCapability: 7.5 },
  nv('2060 Laptop', 6, 7.5, true), nv('2070 Laptop', 8, 7.5, true), nv('2080 Laptop', 8, 7.5, true),
  // NVIDIA RTX 30 (Ampere)
  nv('3050', 8, 8.6), nv('3050 6GB', 6, 8.6), nv('3060', 12, 8.6), nv('3060 8GB', 8, 8.6), nv('3060 Ti', 8, 8.6),
  nv('3070', 8, 8.6), nv('3070 Ti', 8, 8.6), nv('3080', 10, 8.6), nv('3080 12GB', 12, 8.6), nv('3080 Ti', 12, 8.6),
  nv('3090', 24, 8.6), nv('3090 Ti', 24, 8.6),
  nv('3050 Laptop', 4, 8.6, true), nv('3060 Laptop', 6, 8.6, true), nv('3070 Laptop', 8, 8.6, true),
  nv('3070 Ti Laptop', 8, 8.6, true), nv('3080 Laptop', 8, 8.6, true), nv('3080 Laptop 16GB', 16, 8.6, true),
  nv('3080 Ti Laptop', 16, 8.6, true),
  // NVIDIA RTX 40 (Ada)
  nv('4060', 8, 8.9), nv('4060 Ti', 8, 8.9), nv('4060 Ti 16GB', 16, 8.9), nv('4070', 12, 8.9),
  nv('4070 Super', 12, 8.9), nv('4070 Ti', 12, 8.9), nv('4070 Ti Super', 16, 8.9), nv('4080', 16, 8.9),
  nv('4080 Super', 16, 8.9), nv('4090', 24, 8.9),
  nv('4050 Laptop', 6, 8.9, true), nv('4060 Laptop', 8, 8.9, true), nv('4070 Laptop', 8, 8.9, true),
  nv('4080 Laptop', 12, 8.9, true), nv('4090 Laptop', 16, 8.9, true),
  // NVIDIA RTX 50 (Blackwell)
  nv('5050', 8, 12.0), nv('5060', 8, 12.0), nv('5060 Ti', 16, 12.0), nv('5060 Ti 8GB', 8, 12.0), nv('5070', 12, 12.0),
  nv('5070 Ti', 16, 12.0), nv('5080', 16, 12.0), nv('5090', 32, 12.0),
  nv('5060 Laptop', 8, 12.0, true), nv('5070 Laptop', 8, 12.0, true), nv('5070 Ti Laptop', 12, 12.0, true),
  nv('5080 Laptop', 16, 12.0, true), nv('5090 Laptop', 24, 12.0, true),
  // AMD Radeon RX 6000 (RDNA 2)
  amd('6500 XT', 4), amd('6600', 8), amd('6600 XT', 8), amd('6650 XT', 8), amd('6700', 10), amd('6700 XT', 12),
  amd('6750 XT', 12), amd('6800', 16), amd('6800 XT', 16), amd('6900 XT', 16), amd('6950 XT', 16),
  // AMD Radeon RX 7000 (RDNA 3)
  amd('7600', 8), amd('7600 XT', 16), amd('7700 XT', 12), amd('7800 XT', 16), amd('7900 GRE', 16),
  amd('7900 XT', 20), amd('7900 XTX', 24),
  // AMD Radeon RX 9000 (RDNA 4)
  amd('9060 XT', 16), amd('9060 XT 8GB', 8), amd('9070', 16), amd('9070 XT', 16),
];

// Words that tell variants of one model number apart.
const VARIANT_WORDS = ['ti', 'super', 'xt', 'xtx', 'gre'] as const;

interface NameKey {
  number: string | null; // "4090"
  variants: string[]; // sorted subset of VARIANT_WORDS
  laptop: boolean;
  titan: boolean;
  gib: number | null; // memory named in the text, e.g. 12 in "3060 12gb"
}

function nameKey(text: string): NameKey {
  let t = text.toLowerCase().replace(/\(tm\)|\(r\)/g, ' ');
  const mem = /(\d+)\s*(?:gb|gib|g)\b/.exec(t);
  const gib = mem ? Number(mem[1]) : null;
  if (mem) t = t.replace(mem[0], ' ');
  // "7900xtx", "4070ti" → "7900 xtx", "4070 ti"
  t = t.replace(/(\d)([a-z])/g, '$1 $2').replace(/([a-z])(\d)/g, '$1 $2');
  const words = t.split(/[^a-z0-9]+/).filter(Boolean);
  const number = words.find((w) => /^\d{4}$/.test(w)) ?? null;
  const variants = VARIANT_WORDS.filter((v) => words.includes(v)).sort();
  const laptop = words.includes('laptop') || words.includes('mobile') || words.includes('max') || words.includes('q');
  return { number, variants, laptop, titan: words.includes('titan'), gib };
}

/** The catalogue card a (possibly abbreviated) name means, or null. */
export function findGpu(text: string): CatalogueGpu | null {
  const want = nameKey(text);
  if (!want.number && !want.titan) return null;
  const candidates = GPU_CATALOGUE.filter((g) => {
    const k = nameKey(g.name);
    return k.number === want.number && k.titan === want.titan && k.laptop === want.laptop &&
      k.variants.join(' ') === want.variants.join(' ');
  });
  if (want.gib !== null) return candidates.find((g) => g.vramBytes === want.gib! * GiB) ?? null;
  return candidates[0] ?? null;
}

/** Catalogue names close to `text` (same model number), for error messages. */
export function similarGpus(text: string, limit = 6): string[] {
  const want = nameKey(text);
  const same = GPU_CATALOGUE.filter((g) => want.number !== null && nameKey(g.name).number === want.number);
  const list = same.length ? same : GPU_CATALOGUE.filter((g) => !g.laptop && g.vendor === 'nvidia' && /40\d0|50\d0/.test(g.name));
  return list.slice(0, limit).map((g) => `${g.name} (${g.vramBytes / GiB} GB)`);
}
