// The calls the engine answers in-process, quickly and without a job: the
// dataset report, the memory estimate and the fit search. Each is the same
// function the CLI's `inspect-data`, `estimate` and `fit` commands call.
import { inspectData, type InspectOptions } from '../../../engine/data/inspect.ts';
import { resolveDevice } from '../../../engine/estimate/device.ts';
import { estimateMemory, type MemoryEstimate } from '../../../engine/estimate/estimate.ts';
import { fitSettings } from '../../../engine/estimate/fit.ts';
import { resolveModelShape } from '../../../engine/estimate/model-source.ts';
import { MemoryEstimateSchema, type ApiHandlers, type ApiOutput } from '../contract.ts';

export type EngineHandlers = Pick<ApiHandlers, 'data.inspect' | 'estimate.estimate' | 'estimate.fit'>;

/** The estimate without the native plan (an internal table the UI has no use for). */
function estimateOut(e: MemoryEstimate): ApiOutput<'estimate.estimate'> {
  const { plan: _plan, ...rest } = e;
  return MemoryEstimateSchema.parse(rest);
}

export function engineHandlers(): EngineHandlers {
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
      return estimateOut(estimateMemory(shape, choices, dev));
    },
    'estimate.fit': async ({ model, device, fixed }) => {
      const shape = await resolveModelShape(model);
      const { device: dev } = await resolveDevice(device);
      const r = fitSettings(shape, dev, fixed ?? {});
      return {
        ...r,
        choices: r.choices ? { ...r.choices, targets: [...r.choices.targets] } : null,
        estimate: r.estimate ? estimateOut(r.estimate) : null,
      };
    },
  };
}
