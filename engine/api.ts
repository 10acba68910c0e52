// The engine's TypeScript API over the native core: load a base model (bf16
// for LoRA, NF4 for QLoRA), manage named LoRA adapters, run training steps,
// the optimizer, evaluation and cached forward passes for generation.
//
// Every argument is checked here, with errors that name the field, before it
// reaches the native code (which trusts its input). Long calls return
// promises, run off the JavaScript thread and accept an AbortSignal; calls on
// one model are queued, so they never overlap.
import { computeInvFreq } from './model/rope.ts';
import type { ModelConfig } from './model/config.ts';
import { planModelLoad, type LoadPlan, type TensorRef } from './model/folder.ts';
import { UserError } from './model/errors.ts';
import { loadNative, type MemoryCategory, type NativeMemoryStats } from './native/binding.ts';

export type BaseMethod = 'lora' | 'qlora' | 'f32';
export const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type Projection = (typeof PROJECTIONS)[number];
export type AdapterTensorKind = 'A' | 'B' | 'gradA' | 'gradB' | 'adamMA' | 'adamVA' | 'adamMB' | 'adamVB';
const TENSOR_KIND_INDEX: Record<AdapterTensorKind, number> = {
  A: 0, B: 1, gradA: 2, gradB: 3, adamMA: 4, adamVA: 5, adamMB: 6, adamVB: 7,
};

/** An argument the engine cannot use; `field` names it. */
export class EngineInputError extends UserError {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'EngineInputError';
  }
}

/** A call stopped by its AbortSignal. */
export class CancelledError extends Error {
  readonly code = 'ECANCELLED';
  constructor(what: string) {
    super(`${what} was cancelled`);
    this.name = 'CancelledError';
  }
}

export interface AdapterOptions {
  rank: number;
  alpha: number;
  dropout?: number;
  rslora?: boolean;
  targets: readonly Projection[];
  /** Seed of the Kaiming-uniform initialisation of A. */
  seed?: number;
}

export interface AdapterInfo {
  name: string;
  rank: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  targets: Projection[];
  scale: number;
  enabled: boolean;
  trainable: boolean;
  merged: boolean;
  optimizerSteps: number;
}

export interface Batch {
  /** Token ids, row-major [batch, seq]. */
  inputIds: Int32Array | readonly number[];
  /** Same length as inputIds; -100 marks untrained positions; logits[t] are scored against labels[t+1]. */
  labels: Int32Array | readonly number[];
  batch: number;
  seq: number;
  /** Position of each token (default 0..seq-1 per row; packing restarts it per example). */
  positions?: Int32Array | readonly number[];
  /** Example index of each token within its row (packing): tokens attend only within their example. */
  segments?: Int32Array | readonly number[];
  /** Multiplies the gradient: 1 / (trained tokens of the whole optimizer step) for a token-weighted mean. */
  gradScale?: number;
  /** Seed of the LoRA dropout masks of this micro-batch. */
  dropoutSeed?: number;
}

export interface StepOptions {
  signal?: AbortSignal;
  /** Recompute each layer's activations in backward (default true): far less memory, ~1/3 more compute. */
  checkpointing?: boolean;
}

export interface LossResult {
  /** Sum of the cross-entropy over trained tokens. */
  lossSum: number;
  tokens: number;
}

export interface OptimizerOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this value; 0 turns clipping off. Default 1. */
  maxGradNorm?: number;
  signal?: AbortSignal;
}

export interface MemoryStats {
  current: Record<MemoryCategory, number>;
  peak: Record<MemoryCategory, number>;
  totalCurrent: number;
  totalPeak: number;
}

interface NativeModelHandle {
  loadTensors(list: NativeTensor[]): Promise<void>;
  initRandom(seed: number, std: number): Promise<void>;
  addAdapter(spec: object): void;
  removeAdapter(name: string): void;
  setAdapterEnabled(name: string, enabled: boolean): void;
  setAdapterTrainable(name: string, trainable: boolean): void;
  setOptimizerSteps(name: string, steps: number): void;
  adapterInfo(name: string): Omit<AdapterInfo, 'targets'> & { targetMask: number };
  adapterNames(): string[];
  mergeAdapter(name: string): Promise<void>;
  unmergeAdapter(name: string): Promise<void>;
  readAdapterTensor(name: string, layer: number, proj: number, which: number): Float32Array;
  writeAdapterTensor(name: string, layer: number, proj: number, which: number, data: Float32Array): void;
  trainStep(batch: object): Promise<LossResult>;
  evalLoss(batch: object): Promise<LossResult>;
  optimizerStep(opts: object): Promise<number>;
  zeroGrad(): void;
  newCache(batch: number, capacity: number): NativeCacheHandle;
  forward(cache: NativeCacheHandle, tokens: Int32Array, count: number, allPositions: boolean): Promise<Float32Array>;
  cancel(): void;
  baseBytes(): number;
  dispose(): void;
}

interface NativeCacheHandle {
  readonly length: number;
  readonly capacity: number;
  reset(): void;
  truncate(length: number): void;
  dispose(): void;
}

interface NativeTensor {
  file: string;
  offset: number;
  byteLength: number;
  dtype: string;
  role: number;
  layer: number;
  index: number;
}

const ROLE = { embedding: 0, lmHead: 1, finalNorm: 2, norm: 3, projection: 4, bias: 5 } as const;

function nativeTensorList(plan: LoadPlan): NativeTensor[] {
  const list: NativeTensor[] = [];
  const add = (t: TensorRef, role: number, layer = 0, index = 0) =>
    list.push({ file: t.file, offset: t.offset, byteLength: t.byteLength, dtype: t.dtype, role, layer, index });
  add(plan.tensors.embed, ROLE.embedding);
  if (plan.tensors.lmHead) add(plan.tensors.lmHead, ROLE.lmHead);
  add(plan.tensors.finalNorm, ROLE.finalNorm);
  plan.tensors.layers.forEach((L, i) => {
    add(L.inputNorm, ROLE.norm, i, 0);
    add(L.postNorm, ROLE.norm, i, 1);
    if (L.qNorm) add(L.qNorm, ROLE.norm, i, 2);
    if (L.kNorm) add(L.kNorm, ROLE.norm, i, 3);
    const projs = [L.q, L.k, L.v, L.o, L.gate, L.up, L.down];
    projs.forEach((t, p) => add(t, ROLE.projection, i, p));
    const biases = [L.qBias, L.kBias, L.vBias, L.oBias, L.gateBias, L.upBias, L.downBias];
    biases.forEach((t, p) => {
      if (t) add(t, ROLE.bias, i, p);
    });
  });
  return list;
}

/** The native model's shape and constants for a config (also what the memory plan takes). */
export function nativeConfig(c: ModelConfig) {
  return {
    vocab: c.vocabSize,
    hidden: c.hiddenSize,
    intermediate: c.intermediateSize,
    layers: c.numLayers,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    rmsEps: c.rmsNormEps,
    qkvBias: c.attentionBias,
    oBias: c.oProjBias,
    mlpBias: c.mlpBias,
    qkNorm: c.qkNorm,
    tied: c.tieWordEmbeddings,
    invFreq: computeInvFreq(c),
  };
}

function formatOf(method: BaseMethod): 'bf16' | 'nf4' | 'f32' {
  if (method === 'lora') return 'bf16';
  if (method === 'qlora') return 'nf4';
  if (method === 'f32') return 'f32';
  throw new EngineInputError('method', `'${String(method)}' is not a method; use 'lora' or 'qlora'`);
}

function checkInt(field: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new EngineInputError(field, `expected an integer in [${min}, ${max}], got ${String(v)}`);
  return v;
}

function checkNumber(field: string, v: unknown, min: number, max: number, opts: { minExclusive?: boolean } = {}): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v > max || (opts.minExclusive ? v <= min : v < min))
    throw new EngineInputError(field, `expected a number in ${opts.minExclusive ? '(' : '['}${min}, ${max}], got ${String(v)}`);
  return v;
}

function toInt32(field: string, v: Int32Array | readonly number[], length: number): Int32Array {
  const a = v instanceof Int32Array ? v : Int32Array.from(v);
  if (a.length !== length) throw new EngineInputError(field, `expected ${length} values (batch × seq), got ${a.length}`);
  return a;
}

function wrapNativeError(e: unknown, what: string): Error {
  if (e && typeof e === 'object' && (e as { code?: string }).code === 'ECANCELLED') return new CancelledError(what);
  return e instanceof Error ? e : new Error(String(e));
}

/** A loaded base model with its adapters. */
export class EngineModel {
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    private readonly handle: NativeModelHandle,
    readonly config: ModelConfig,
    readonly method: BaseMethod,
    readonly source: string | null,
  ) {}

  /** Loads a Hugging Face model folder; `method` chooses a bf16 (LoRA) or NF4 (QLoRA) base. */
  static async load(dir: string, opts: { method: BaseMethod; signal?: AbortSignal }): Promise<EngineModel> {
    const format = formatOf(opts.method);
    const plan = await planModelLoad(dir);
    const native = loadNative();
    const Ctor = native.NativeModel as new (config: object, format: string) => NativeModelHandle;
    const model = new EngineModel(new Ctor(nativeConfig(plan.config), format), plan.config, opts.method, plan.dir);
    try {
      await model.run('loading the model', opts.signal, () => model.handle.loadTensors(nativeTensorList(plan)));
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }

  /** A model of the given shape with random weights (normal, std), built without any file. */
  static async random(config: ModelConfig, opts: { method: BaseMethod; seed?: number; std?: number; signal?: AbortSignal }): Promise<EngineModel> {
    const format = formatOf(opts.method);
    const native = loadNative();
    const Ctor = native.NativeModel as new (config: object, format: string) => NativeModelHandle;
    const model = new EngineModel(new Ctor(nativeConfig(config), format), config, opts.method, null);
    try {
      await model.run('building the model', opts.signal, () =>
        model.handle.initRandom(checkInt('seed', opts.seed ?? 0, 0), checkNumber('std', opts.std ?? 0.02, 0, 10)),
      );
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }

  // ---- adapters ----------------------------------------------------------------

  addAdapter(name: string, opts: AdapterOptions): void {
    this.checkName(name);
    if (this.adapterNames().includes(name)) throw new EngineInputError('name', `an adapter named '${name}' already exists`);
    const rank = checkInt('rank', opts.rank, 1, 4096);
    const alpha = checkNumber('alpha', opts.alpha, 0, 1e6, { minExclusive: true });
    const dropout = checkNumber('dropout', opts.dropout ?? 0, 0, 0.99);
    if (!Array.isArray(opts.targets) || opts.targets.length === 0)
      throw new EngineInputError('targets', `choose at least one of ${PROJECTIONS.join(', ')}`);
    let mask = 0;
    for (const t of opts.targets) {
      const p = PROJECTIONS.indexOf(t);
      if (p < 0) throw new EngineInputError('targets', `'${String(t)}' is not a projection; use ${PROJECTIONS.join(', ')}`);
      mask |= 1 << p;
    }
    this.live().addAdapter({ name, rank, alpha, dropout, rslora: !!opts.rslora, targetMask: mask, seed: checkInt('seed', opts.seed ?? 0, 0) });
  }

  removeAdapter(name: string): void {
    this.live().removeAdapter(this.checkAdapter(name));
  }

  /** An enabled adapter adds its update to the outputs; disabled, the output is exactly the base model's. */
  setAdapterEnabled(name: string, enabled: boolean): void {
    this.live().setAdapterEnabled(this.checkAdapter(name), enabled);
  }

  /** Only trainable adapters receive gradients and optimizer updates. */
  setAdapterTrainable(name: string, trainable: boolean): void {
    this.live().setAdapterTrainable(this.checkAdapter(name), trainable);
  }

  /** Restores the AdamW step count (for bias correction) when resuming. */
  setOptimizerSteps(name: string, steps: number): void {
    this.live().setOptimizerSteps(this.checkAdapter(name), checkInt('steps', steps, 0));
  }

  adapterNames(): string[] {
    return this.live().adapterNames();
  }

  adapterInfo(name: string): AdapterInfo {
    const raw = this.live().adapterInfo(this.checkAdapter(name));
    const { targetMask, ...rest } = raw;
    return { ...rest, targets: PROJECTIONS.filter((_, i) => (targetMask & (1 << i)) !== 0) };
  }

  /** Adds the adapter into the (bf16) base weights; the adapter then costs nothing at inference. */
  async mergeAdapter(name: string, signal?: AbortSignal): Promise<void> {
    this.checkAdapter(name);
    return this.run('merging the adapter', signal, () => this.handle.mergeAdapter(name));
  }

  async unmergeAdapter(name: string, signal?: AbortSignal): Promise<void> {
    this.checkAdapter(name);
    return this.run('unmerging the adapter', signal, () => this.handle.unmergeAdapter(name));
  }

  /** A copy of one adapter tensor: A [r, in], B [out, r], their gradients or AdamW moments. */
  readAdapterTensor(name: string, layer: number, proj: Projection, kind: AdapterTensorKind = 'A'): Float32Array {
    const [l, p, w] = this.tensorIndex(name, layer, proj, kind);
    return this.live().readAdapterTensor(name, l, p, w);
  }

  writeAdapterTensor(name: string, layer: number, proj: Projection, kind: AdapterTensorKind, data: Float32Array): void {
    const [l, p, w] = this.tensorIndex(name, layer, proj, kind);
    if (!(data instanceof Float32Array)) throw new EngineInputError('data', 'expected a Float32Array');
    for (let i = 0; i < data.length; ++i)
      if (!Number.isFinite(data[i]!)) throw new EngineInputError('data', `value ${i} is not finite`);
    this.live().writeAdapterTensor(name, l, p, w, data);
  }

  // ---- training ------------------------------------------------------------------

  /** Forward and backward of one micro-batch: adds the adapter gradients, returns the loss sum. */
  async trainStep(batch: Batch, opts: StepOptions = {}): Promise<LossResult> {
    const b = { ...this.checkBatch(batch), checkpointing: opts.checkpointing ?? true };
    return this.run('the training step', opts.signal, () => this.handle.trainStep(b));
  }

  /** Forward only: loss sum and trained-token count (no gradients, no dropout). */
  async evalLoss(batch: Batch, opts: { signal?: AbortSignal } = {}): Promise<LossResult> {
    const b = this.checkBatch(batch);
    return this.run('the evaluation', opts.signal, () => this.handle.evalLoss(b));
  }

  /** Global-norm clipping, AdamW on every trainable adapter, then zeroes the gradients. */
  async optimizerStep(opts: OptimizerOptions): Promise<{ gradNorm: number }> {
    const o = {
      lr: checkNumber('lr', opts.lr, 0, 10),
      beta1: checkNumber('beta1', opts.beta1 ?? 0.9, 0, 1, {}),
      beta2: checkNumber('beta2', opts.beta2 ?? 0.999, 0, 1, {}),
      eps: checkNumber('eps', opts.eps ?? 1e-8, 0, 1, { minExclusive: true }),
      weightDecay: checkNumber('weightDecay', opts.weightDecay ?? 0, 0, 10),
      maxGradNorm: checkNumber('maxGradNorm', opts.maxGradNorm ?? 1, 0, 1e9),
    };
    if (o.beta1 >= 1 || o.beta2 >= 1) throw new EngineInputError(o.beta1 >= 1 ? 'beta1' : 'beta2', 'must be below 1');
    const gradNorm = await this.run('the optimizer step', opts.signal, () => this.handle.optimizerStep(o));
    return { gradNorm };
  }

  zeroGrad(): void {
    this.live().zeroGrad();
  }

  // ---- generation ----------------------------------------------------------------

  /** A key/value cache for `batch` sequences of up to `capacity` tokens. */
  createCache(batch: number, capacity: number): KvCache {
    checkInt('batch', batch, 1, 1024);
    checkInt('capacity', capacity, 1, 1 << 22);
    return new KvCache(this.live().newCache(batch, capacity), batch);
  }

  /**
   * Runs `count` new tokens per sequence ([batch, count], row-major) through the
   * model, appending them to the cache. Returns logits [batch, V] of each
   * sequence's last new token, or [batch, count, V] with allPositions.
   */
  async forward(cache: KvCache, tokens: Int32Array | readonly number[], opts: { allPositions?: boolean; signal?: AbortSignal } = {}): Promise<Float32Array> {
    if (!(cache instanceof KvCache)) throw new EngineInputError('cache', 'expected a cache from createCache()');
    const count = tokens.length / cache.batch;
    if (!Number.isInteger(count) || count < 1)
      throw new EngineInputError('tokens', `expected a positive multiple of the cache batch (${cache.batch}) of token ids, got ${tokens.length}`);
    const t = toInt32('tokens', tokens, tokens.length);
    this.checkIds('tokens', t);
    if (cache.length + count > cache.capacity)
      throw new EngineInputError('tokens', `the cache holds ${cache.capacity} positions; ${cache.length} are used and ${count} more do not fit`);
    return this.run('the forward pass', opts.signal, () => this.handle.forward(cache.handle, t, count, !!opts.allPositions));
  }

  /** Bytes the frozen base weights occupy in memory. */
  baseBytes(): number {
    return this.live().baseBytes();
  }

  /** Frees the model and every adapter. Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.handle.dispose();
  }

  // ---- internals -------------------------------------------------------------------

  private live(): NativeModelHandle {
    if (this.disposed) throw new Error('this model has been disposed');
    return this.handle;
  }

  private run<T>(what: string, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
    this.live();
    const task = this.queue.then(async () => {
      if (signal?.aborted) throw new CancelledError(what);
      const onAbort = () => this.handle.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        return await call();
      } catch (e) {
        throw wrapNativeError(e, what);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    });
    this.queue = task.catch(() => undefined);
    return task;
  }

  private checkName(name: string): void {
    if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name))
      throw new EngineInputError('name', `adapter names use 1-64 letters, digits, '_', '-' or '.', got '${String(name)}'`);
  }

  private checkAdapter(name: string): string {
    if (!this.live().adapterNames().includes(name))
      throw new EngineInputError('name', `no adapter named '${name}' (have: ${this.adapterNames().join(', ') || 'none'})`);
    return name;
  }

  private tensorIndex(name: string, layer: number, proj: Projection, kind: AdapterTensorKind): [number, number, number] {
    this.checkAdapter(name);
    checkInt('layer', layer, 0, this.config.numLayers - 1);
    const p = PROJECTIONS.indexOf(proj);
    if (p < 0) throw new EngineInputError('proj', `'${String(proj)}' is not a projection`);
    if (!this.adapterInfo(name).targets.includes(proj)) throw new EngineInputError('proj', `adapter '${name}' does not adapt ${proj}`);
    const w = TENSOR_KIND_INDEX[kind];
    if (w === undefined) throw new EngineInputError('kind', `'${String(kind)}' is not one of ${Object.keys(TENSOR_KIND_INDEX).join(', ')}`);
    return [layer, p, w];
  }

  private checkIds(field: string, ids: Int32Array, allowIgnore = false): void {
    const V = this.config.vocabSize;
    for (let i = 0; i < ids.length; ++i) {
      const t = ids[i]!;
      if ((t < 0 || t >= V) && !(allowIgnore && t === -100))
        throw new EngineInputError(field, `value ${i} is ${t}, outside the vocabulary [0, ${V})${allowIgnore ? ' and not -100' : ''}`);
    }
  }

  private checkBatch(b: Batch) {
    const batch = checkInt('batch', b.batch, 1, 4096);
    const seq = checkInt('seq', b.seq, 1, 1 << 20);
    const n = batch * seq;
    const inputIds = toInt32('inputIds', b.inputIds, n);
    const labels = toInt32('labels', b.labels, n);
    this.checkIds('inputIds', inputIds);
    this.checkIds('labels', labels, true);
    const out: Record<string, unknown> = {
      inputIds, labels, batch, seq,
      gradScale: checkNumber('gradScale', b.gradScale ?? 1, 0, 1e9),
      dropoutSeed: checkInt('dropoutSeed', b.dropoutSeed ?? 0, 0),
    };
    if (b.positions) {
      const pos = toInt32('positions', b.positions, n);
      for (let i = 0; i < n; ++i)
        if (pos[i]! < 0) throw new EngineInputError('positions', `value ${i} is negative`);
      out.positions = pos;
    }
    if (b.segments) out.segments = toInt32('segments', b.segments, n);
    return out;
  }
}

/** A key/value cache for generation; dispose() frees it. */
export class KvCache {
  constructor(readonly handle: NativeCacheHandle, readonly batch: number) {}
  get length(): number {
    return this.handle.length;
  }
  get capacity(): number {
    return this.handle.capacity;
  }
  /** Forget everything (the memory stays allocated). */
  reset(): void {
    this.handle.reset();
  }
  /** Drop positions from `length` on (e.g. to re-run a prompt suffix). */
  truncate(length: number): void {
    this.handle.truncate(checkInt('length', length, 0));
  }
  dispose(): void {
    this.handle.dispose();
  }
}

/** Current and peak bytes the engine has allocated, per category (process-wide). */
export function memoryStats(): MemoryStats {
  const s: NativeMemoryStats = loadNative().memoryStats();
  return s;
}

/** Sets every category's peak to its current value. */
export function resetMemoryPeaks(): void {
  loadNative().resetPeaks();
}

export function cpuInfo() {
  return loadNative().cpuInfo();
}
