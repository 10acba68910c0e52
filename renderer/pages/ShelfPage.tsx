import { PageHeader } from '../components/ui.tsx';
export function ShelfPage() {
  return <PageHeader title="ShelfPage" />;
}
