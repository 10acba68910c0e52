import { PageHeader } from '../components/ui.tsx';
export function ComparePage() {
  return <PageHeader title="ComparePage" />;
}
