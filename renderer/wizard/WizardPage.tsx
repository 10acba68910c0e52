import { PageHeader } from '../components/ui.tsx';
export function WizardPage() {
  return <PageHeader title="New adapter" />;
}
