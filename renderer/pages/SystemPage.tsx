import { PageHeader } from '../components/ui.tsx';
export function SystemPage() {
  return <PageHeader title="SystemPage" />;
}
