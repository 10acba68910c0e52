import { PageHeader } from '../components/ui.tsx';
export function AdapterPage({ adapterId }: { adapterId: string }) {
  return <PageHeader title={adapterId} />;
}
