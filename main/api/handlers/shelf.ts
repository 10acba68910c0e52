// The shelf and comparison calls, answered by the library (main/library).
// Exports write into a hidden folder beside the destination and rename it
// into place, so an export is all there or not there at all.
import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { exportMerged } from '../../../engine/adapters/merge.ts';
import { UserError } from '../../../engine/model/errors.ts';
import { syncFolder } from '../../../engine/model/atomic.ts';
import type { Library } from '../../library/library.ts';
import { copyAdapterFiles } from '../../library/store.ts';
import type { ApiHandlers } from '../contract.ts';

type ShelfMethods = 'shelf.list' | 'shelf.tags' | 'shelf.get' | 'shelf.rename' | 'shelf.setTags' | 'shelf.setNotes' | 'shelf.delete' | 'shelf.restore'
  | 'shelf.emptyTrash' | 'shelf.import' | 'shelf.export' | 'shelf.verify' | 'comparisons.list' | 'comparisons.save' | 'comparisons.rate';
export type ShelfHandlers = Pick<ApiHandlers, ShelfMethods>;

export function shelfHandlers(library: Library): ShelfHandlers {
  // The data an adapter was trained on, in words: the dataset's name, else the run's data file.
  const withDatasetName = <A extends { datasetId: number | null; runId: number | null }>(a: A): A & { datasetName: string | null } => {
    const dataset = a.datasetId != null ? library.catalog.findDataset(a.datasetId) : null;
    const run = !dataset && a.runId != null ? library.runs.find(a.runId) : null;
    return { ...a, datasetName: dataset?.name ?? (run ? path.basename(run.config.data) : null) };
  };
  return {
    'shelf.list': (query) => library.listAdapters(query).map(withDatasetName),
    'shelf.tags': () => library.adapters.tagSummary(),
    'shelf.get': ({ id }) => {
      const adapter = withDatasetName(library.adapters.get(id));
      const run = adapter.runId != null ? library.runs.find(adapter.runId) : null;
      return {
        adapter,
        run,
        series: run ? library.runs.series(run.id) : null,
        comparisons: library.comparisons.listComparisons(id),
      };
    },
    'shelf.rename': ({ id, name }) => library.adapters.rename(id, name),
    'shelf.setTags': ({ id, tags }) => library.adapters.setTags(id, tags),
    'shelf.setNotes': ({ id, notes }) => library.adapters.setNotes(id, notes),
    'shelf.delete': ({ id }) => library.deleteAdapter(id),
    'shelf.restore': ({ id }) => library.restoreAdapter(id),
    'shelf.emptyTrash': () => library.emptyTrash(),
    'shelf.import': async ({ folder, baseModel, ...meta }) => {
      // A base folder given is recorded in the catalogue, so the adapter is checked against its shapes.
      const base = baseModel ? await library.catalog.addBaseModel(baseModel) : null;
      return library.importAdapter(folder, { ...meta, baseModelId: base?.id ?? null });
    },
    'shelf.export': async ({ id, format, to, baseModel }) => {
      const adapter = library.adapters.get(id);
      if (adapter.state !== 'ready') throw new UserError(`Adapter "${adapter.name}" is in the trash; restore it before exporting.`);
      const dest = path.resolve(to);
      if (existsSync(dest)) throw new UserError(`${dest} already exists; choose a new folder to export into.`);
      if (!existsSync(path.dirname(dest))) throw new UserError(`The folder ${path.dirname(dest)} does not exist; create it or choose another place.`);
      const source = library.adapterFolder(adapter);
      if (format === 'merged') {
        if (!baseModel) throw new UserError('A merged export needs the base model folder (baseModel): the adapter is folded into its weights.');
        const result = await exportMerged({ modelDir: baseModel, adapterDir: source, outDir: dest });
        return { path: result.outDir, bytes: result.bytes };
      }
      const partial = path.join(path.dirname(dest), `.${path.basename(dest)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
      try {
        const bytes = await copyAdapterFiles(source, partial);
        await rename(partial, dest);
        await syncFolder(path.dirname(dest));
        return { path: dest, bytes };
      } catch (err) {
        await rm(partial, { recursive: true, force: true });
        throw err;
      }
    },
    'shelf.verify': () => library.verifyAdapters(),
    'comparisons.list': ({ adapterId }) => library.comparisons.listComparisons(adapterId),
    'comparisons.save': (input) => library.comparisons.save(input),
    'comparisons.rate': ({ id, index, rating }) => library.comparisons.rate(id, index, rating),
  };
}
