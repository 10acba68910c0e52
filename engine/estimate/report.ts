// Estimates for people (a table) and for programs (one JSON object).
//
// JSON keys (snake_case, bytes as integers):
//   model, model_source ('preset' | 'folder'), arch,
//   method, rank, targets, seq_len, batch, gradient_checkpointing,
//   device: { kind, name, source, total_bytes, available_bytes (null: unknown) },
//   base_bytes, adapters_bytes, gradients_bytes, optimizer_bytes,
//   activations_bytes, workspace_bytes   each category at the moment the total
//                                        peaks; they sum to engine_bytes
//   category_peaks: { <category>_bytes } each category's own peak
//   engine_bytes                         the engine's peak
//   overheads: [{ name, bytes, source }], overhead_bytes
//   total_bytes                          the predicted peak = engine + overheads
//   capacity_bytes, usable_bytes, fits, margin_bytes (usable − total)
//   peak_phase ('forward' | 'backward' | 'optimizer'), peak_point
//   phase_peaks: { forward_bytes, backward_bytes, optimizer_bytes }
//
// fit (fitToJson): { model, device, found, safety_margin, budget_bytes,
//   settings: { method, rank, targets, seq_len, batch, gradient_checkpointing } | null,
//   estimate: <the estimate object above> | null, changes: [text], suggestions: [text] }
import { MEMORY_CATEGORIES } from '../native/binding.ts';
import type { EstimateDevice } from './device.ts';
import type { MemoryEstimate } from './estimate.ts';
import type { FitResult } from './fit.ts';

export function formatBytes(bytes: number): string {
  const abs = Math.abs(bytes);
  const sign = bytes < 0 ? '-' : '';
  if (abs >= 1024 ** 3) return `${sign}${(abs / 1024 ** 3).toFixed(2)} GiB`;
  if (abs >= 1024 ** 2) return `${sign}${(abs / 1024 ** 2).toFixed(1)} MiB`;
  if (abs >= 1024) return `${sign}${(abs / 1024).toFixed(1)} KiB`;
  return `${sign}${abs} B`;
}

export function estimateToJson(e: MemoryEstimate): Record<string, unknown> {
  const byCategory = (u: Record<string, number>) => Object.fromEntries(MEMORY_CATEGORIES.map((c) => [`${c}_bytes`, u[c]]));
  return {
    model: e.model.name,
    model_source: e.model.source,
    arch: e.model.arch,
    method: e.choices.method,
    rank: e.choices.rank,
    targets: [...e.choices.targets],
    seq_len: e.choices.seqLen,
    batch: e.choices.batch,
    gradient_checkpointing: e.choices.checkpointing,
    device: {
      kind: e.device.kind,
      name: e.device.name,
      source: e.device.source,
      total_bytes: e.device.totalBytes,
      available_bytes: e.device.availableBytes,
    },
    ...byCategory(e.categories),
    category_peaks: byCategory(e.categoryPeaks),
    engine_bytes: e.engineBytes,
    overheads: e.overheads.map((o) => ({ name: o.name, bytes: o.bytes, source: o.source })),
    overhead_bytes: e.overheadBytes,
    total_bytes: e.totalBytes,
    capacity_bytes: e.capacityBytes,
    usable_bytes: e.usableBytes,
    fits: e.fits,
    margin_bytes: e.marginBytes,
    peak_phase: e.peakPhase,
    peak_point: e.peakPoint,
    phase_peaks: {
      forward_bytes: e.phases.forward,
      backward_bytes: e.phases.backward,
      optimizer_bytes: e.phases.optimizer,
    },
  };
}

const CATEGORY_LABEL: Record<string, string> = {
  base: 'base weights',
  adapters: 'LoRA adapters',
  gradients: 'gradients',
  optimizer: 'optimizer (AdamW)',
  activations: 'activations',
  workspace: 'workspace',
};

function table(rows: [string, string, string][]): string {
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  return rows.map(([a, b, c]) => `  ${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`.trimEnd()).join('\n');
}

/** A readable report: categories, overheads, total, capacity, fits or not with the margin. */
export function renderEstimate(e: MemoryEstimate): string {
  const c = e.choices;
  const head = [
    `Memory estimate: ${e.model.name} (${e.model.arch}), ${c.method === 'qlora' ? 'QLoRA (NF4 base)' : 'LoRA (bf16 base)'}, rank ${c.rank}`,
    `  targets ${c.targets.join(', ')}; seq-len ${c.seqLen}, batch ${c.batch}, gradient checkpointing ${c.checkpointing ? 'on' : 'off'}`,
    `  device: ${e.device.name}${e.device.source === 'catalogue' ? ' (catalogue)' : ''}`,
    '',
  ];
  const rows: [string, string, string][] = [['', 'at peak', 'own peak']];
  for (const cat of MEMORY_CATEGORIES) rows.push([CATEGORY_LABEL[cat] ?? cat, formatBytes(e.categories[cat]), formatBytes(e.categoryPeaks[cat])]);
  rows.push(['engine total', formatBytes(e.engineBytes), `peak in ${e.peakPhase}: ${e.peakPoint}`]);
  for (const o of e.overheads) rows.push([o.name, formatBytes(o.bytes), o.source]);
  rows.push(['predicted peak', formatBytes(e.totalBytes), '']);
  const usable = e.device.availableBytes !== null ? `${formatBytes(e.usableBytes)} free of ${formatBytes(e.capacityBytes)}` : formatBytes(e.capacityBytes);
  const verdict = e.fits
    ? `Fits: ${formatBytes(e.marginBytes)} to spare (${usable}).`
    : `Does not fit: ${formatBytes(-e.marginBytes)} short (${usable}). Try QLoRA, gradient checkpointing, a shorter --seq-len or a smaller --batch; \`lora-studio fit\` finds settings that fit.`;
  return [...head, table(rows), '', verdict].join('\n');
}

export function fitToJson(r: FitResult, model: string, device: EstimateDevice): Record<string, unknown> {
  const c = r.choices;
  return {
    model,
    device: { kind: device.kind, name: device.name, source: device.source, total_bytes: device.totalBytes, available_bytes: device.availableBytes },
    found: r.found,
    safety_margin: r.safetyMargin,
    budget_bytes: r.budgetBytes,
    settings: c
      ? { method: c.method, rank: c.rank, targets: [...c.targets], seq_len: c.seqLen, batch: c.batch, gradient_checkpointing: c.checkpointing }
      : null,
    estimate: r.estimate ? estimateToJson(r.estimate) : null,
    changes: r.changes,
    suggestions: r.suggestions,
  };
}

/** The settings found (as train flags), why checkpointing or QLoRA is on, or what would fit. */
export function renderFit(r: FitResult, model: string, device: EstimateDevice): string {
  const margin = `${Math.round(r.safetyMargin * 100)}%`;
  const head = `Fit for ${model} on ${device.name}${device.source === 'catalogue' ? ' (catalogue)' : ''}: budget ${formatBytes(r.budgetBytes)} (${margin} of the usable memory kept free).`;
  if (!r.found || !r.choices || !r.estimate) return [head, '', 'Nothing fits.', ...r.suggestions.map((s) => `  - ${s}`)].join('\n');
  const c = r.choices;
  const flags = [
    `--method ${c.method}`,
    `--seq-len ${c.seqLen}`,
    `--batch ${c.batch}`,
    `--rank ${c.rank}`,
    `--targets ${c.targets.length === 7 ? 'all' : c.targets.join(',')}`,
    ...(c.checkpointing ? [] : ['--no-gradient-checkpointing']),
  ].join(' ');
  const e = r.estimate;
  return [
    head,
    '',
    `Best settings: ${c.method === 'qlora' ? 'QLoRA (4-bit NF4 base)' : 'LoRA (bf16 base)'}, seq-len ${c.seqLen}, batch ${c.batch}, rank ${c.rank}, gradient checkpointing ${c.checkpointing ? 'on' : 'off'}`,
    `  predicted peak ${formatBytes(e.totalBytes)} (peak in ${e.peakPhase}: ${e.peakPoint})`,
    ...r.changes.map((s) => `  - ${s}`),
    '',
    `  lora-studio train ${flags} --model ... --data ... --out ...`,
  ].join('\n');
}
