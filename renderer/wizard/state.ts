// The wizard's choices, kept for the whole session (moving between pages or
// steps never loses them) and mirrored to sessionStorage so a reload keeps
// them too.
import { useSyncExternalStore } from 'react';
import type { Job } from '../api/client.ts';

export type Preset = 'quick' | 'balanced' | 'thorough';

export interface MethodChoices {
  method: 'lora' | 'qlora';
  preset: Preset | 'custom';
  rank: number;
  alpha: number;
  lr: number;
  steps: number;
  seqLen: number;
  batchSize: number;
  gradAccum: number;
  checkpointing: boolean;
  targets: string[];
}

export interface WizardState {
  step: number;
  /** Base model folder (absolute path on the backend's machine). */
  modelPath: string | null;
  modelName: string | null;
  dataPath: string;
  method: MethodChoices;
  /** The training job started in step 4, and the adapter it put on the shelf. */
  jobId: string | null;
  adapterId: string | null;
}

/** Presets: what changes between them is how long and how much the adapter learns. */
export const PRESETS: Record<Preset, Pick<MethodChoices, 'rank' | 'alpha' | 'lr' | 'steps'> & { label: string; about: string }> = {
  quick: { label: 'Quick', about: 'A first try in minutes: a small adapter, few steps.', rank: 8, alpha: 16, lr: 2e-4, steps: 60 },
  balanced: { label: 'Balanced', about: 'A good default for most data sets.', rank: 16, alpha: 32, lr: 2e-4, steps: 200 },
  thorough: { label: 'Thorough', about: 'Learns more, takes longer; for larger data sets.', rank: 32, alpha: 64, lr: 1e-4, steps: 600 },
};

export const ALL_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

const initial: WizardState = {
  step: 1,
  modelPath: null,
  modelName: null,
  dataPath: '',
  method: { method: 'lora', preset: 'quick', ...pick(PRESETS.quick), seqLen: 512, batchSize: 4, gradAccum: 1, checkpointing: false, targets: [...ALL_TARGETS] },
  jobId: null,
  adapterId: null,
};

function pick(p: (typeof PRESETS)[Preset]) {
  return { rank: p.rank, alpha: p.alpha, lr: p.lr, steps: p.steps };
}

export function applyPreset(choices: MethodChoices, preset: Preset): MethodChoices {
  return { ...choices, preset, ...pick(PRESETS[preset]) };
}

const STORAGE_KEY = 'lora-studio-wizard';
let state: WizardState = load();
const listeners = new Set<() => void>();

function load(): WizardState {
  try {
    const kept = sessionStorage.getItem(STORAGE_KEY);
    if (kept) return { ...initial, ...(JSON.parse(kept) as Partial<WizardState>) };
  } catch {
    // Unreadable or disabled storage: start fresh.
  }
  return initial;
}

export function updateWizard(change: Partial<WizardState> | ((s: WizardState) => Partial<WizardState>)) {
  state = { ...state, ...(typeof change === 'function' ? change(state) : change) };
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(state));
  } catch {
    // Storage full or disabled: the choices still live in memory.
  }
  for (const listener of listeners) listener();
}

export function resetWizard() {
  updateWizard(initial);
}

export function useWizard(): WizardState {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => state,
  );
}

export function jobFinished(job: Job | null): boolean {
  return job !== null && (job.status === 'completed' || job.status === 'failed' || job.status === 'cancelled');
}
