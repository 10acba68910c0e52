// Step 6: put the adapter on the shelf under a name, with tags and notes.
import { useEffect, useState } from 'react';
import { api } from '../api/client.ts';
import { Button, Card, ErrorNotice, Field, Spinner, TextInput } from '../components/ui.tsx';
import { useAction, useLoad } from '../hooks.ts';
import { navigate } from '../route.ts';
import { resetWizard, updateWizard, useWizard } from './state.ts';

export function parseTags(text: string): string[] {
  return [...new Set(text.split(',').map((t) => t.trim()).filter(Boolean))];
}

export function SaveStep() {
  const wizard = useWizard();
  const id = wizard.adapterId;
  const detail = useLoad(() => (id ? api.call('shelf.get', { id }) : Promise.resolve(null)), [id]);
  const [name, setName] = useState('');
  const [tags, setTags] = useState('');
  const [notes, setNotes] = useState('');
  const save = useAction();

  useEffect(() => {
    const adapter = detail.data?.adapter;
    if (adapter) {
      setName(adapter.name);
      setTags(adapter.tags.join(', '));
      setNotes(adapter.notes);
    }
  }, [detail.data]);

  if (!id) return <Card title="Save"><p className="text-sm">Finish a training run first.</p></Card>;

  async function saveAndOpen() {
    const ok = await save.run(async () => {
      await api.call('shelf.rename', { id: id!, name: name.trim() });
      await api.call('shelf.setTags', { id: id!, tags: parseTags(tags) });
      await api.call('shelf.setNotes', { id: id!, notes });
      return true;
    });
    if (ok) {
      resetWizard();
      navigate('shelf', id!);
    }
  }

  return (
    <div className="flex flex-col gap-4">
      <Card title="Save to the shelf">
        {detail.error ? <ErrorNotice error={detail.error} onRetry={detail.reload} /> : null}
        {!detail.data && detail.loading && <Spinner />}
        <form
          className="flex max-w-xl flex-col gap-4"
          onSubmit={(e) => {
            e.preventDefault();
            void saveAndOpen();
          }}
        >
          <Field label="Name" error={name.trim() ? null : 'Give the adapter a name.'}>
            {(fid) => <TextInput id={fid} value={name} onChange={(e) => setName(e.target.value)} />}
          </Field>
          <Field label="Tags" hint="Separated by commas, e.g. capitals, geography">
            {(fid) => <TextInput id={fid} value={tags} onChange={(e) => setTags(e.target.value)} />}
          </Field>
          <Field label="Notes">
            {(fid) => <textarea id={fid} rows={4} value={notes} onChange={(e) => setNotes(e.target.value)} className="rounded-md border border-stone-300 bg-white px-2.5 py-1.5 text-sm dark:border-stone-700 dark:bg-stone-950" />}
          </Field>
          {save.error ? <ErrorNotice error={save.error} /> : null}
          <div className="flex justify-between">
            <Button onClick={() => updateWizard({ step: 5 })}>← Back</Button>
            <Button kind="primary" type="submit" disabled={!name.trim() || save.running}>
              {save.running ? 'Saving…' : 'Save and open on the shelf'}
            </Button>
          </div>
        </form>
      </Card>
    </div>
  );
}
