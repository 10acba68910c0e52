// The calls the engine answers in-process, quickly and without a job: the
// dataset report, the memory estimate and the fit search. Each is the same
// function the CLI's `inspect-data`, `estimate` and `fit` commands call.
// For this machine's devices the estimate also carries its correction by the
// runs measured here (engine/estimate/correction.ts), when there are any.
import { inspectData, type InspectOptions } from '../../../engine/data/inspect.ts';
import {
  applyCorrection, correctionFor, fitWithCorrection, measuredRatios,
  type CorrectedEstimate, type MeasuredRun,
} from '../../../engine/estimate/correction.ts';
import { cpuDevice, resolveDevice, type EstimateDevice } from '../../../engine/estimate/device.ts';
import { estimateMemory, type MemoryEstimate } from '../../../engine/estimate/estimate.ts';
import { fitSettings } from '../../../engine/estimate/fit.ts';
import { resolveModelShape } from '../../../engine/estimate/model-source.ts';
import { MemoryEstimateSchema, type ApiHandlers, type ApiOutput } from '../contract.ts';

export type EngineHandlers = Pick<ApiHandlers, 'data.inspect' | 'estimate.estimate' | 'estimate.fit'>;

export interface EngineHandlerOptions {
  /** Finished runs measured on this machine (main/library measuredPeaks(machine)); none: no correction. */
  measuredRuns?: () => readonly MeasuredRun[];
}

/** The estimate without the native plan (an internal table the UI has no use for), with its correction when given. */
function estimateOut(e: MemoryEstimate, corrected: CorrectedEstimate | null = null): ApiOutput<'estimate.estimate'> {
  const { plan: _plan, ...rest } = e;
  const correction = corrected && {
    runs: corrected.correction.runs, categories: corrected.categories, engineBytes: corrected.engineBytes,
    overheadBytes: corrected.overheadBytes, totalBytes: corrected.totalBytes, fits: corrected.fits,
    marginBytes: corrected.marginBytes, factors: corrected.correction.factors, sentence: corrected.sentence,
  };
  return MemoryEstimateSchema.parse(correction ? { ...rest, correction } : rest);
}

export function engineHandlers(opts: EngineHandlerOptions = {}): EngineHandlers {
  // Ratios of the runs measured here, for estimates of this machine only; null: no correction.
  const ratiosFor = async (device: EstimateDevice) => {
    const runs = device.source === 'this machine' ? opts.measuredRuns?.() ?? [] : [];
    return runs.length ? measuredRatios(runs, cpuDevice()) : null;
  };
  return {
    'data.inspect': async ({ model, data, format, columns, lossOn, maxSeqLen, truncation, skipBadRecords }) => {
      const opts: InspectOptions = {};
      if (format) opts.format = format;
      if (columns) opts.columns = columns;
      if (lossOn) opts.lossOn = lossOn;
      if (maxSeqLen) opts.maxSeqLen = maxSeqLen;
      if (truncation) opts.truncation = truncation;
      if (skipBadRecords !== undefined) opts.skipBadRecords = skipBadRecords;
      return inspectData(model, data, opts);
    },
    'estimate.estimate': async ({ model, device, choices }) => {
      const shape = await resolveModelShape(model);
      const { device: dev } = await resolveDevice(device);
      const plain = estimateMemory(shape, choices, dev);
      const ratios = await ratiosFor(dev);
      const correction = ratios && correctionFor(ratios, choices.method);
      return estimateOut(plain, correction && applyCorrection(plain, correction));
    },
    'estimate.fit': async ({ model, device, fixed }) => {
      const shape = await resolveModelShape(model);
      const { device: dev } = await resolveDevice(device);
      const ratios = await ratiosFor(dev);
      const { fit: r, corrected } = ratios
        ? fitWithCorrection(shape, dev, fixed ?? {}, (method) => correctionFor(ratios, method))
        : { fit: fitSettings(shape, dev, fixed ?? {}), corrected: null };
      return {
        ...r,
        choices: r.choices ? { ...r.choices, targets: [...r.choices.targets] } : null,
        estimate: r.estimate ? estimateOut(r.estimate, corrected) : null,
      };
    },
  };
}
