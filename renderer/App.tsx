// The window: a sidebar of pages and the current page. Routes are hash paths:
//   #/system  #/wizard  #/shelf  #/shelf/<adapterId>  #/compare  #/settings
import { navigate, useRoute } from './route.ts';
import { SystemPage } from './pages/SystemPage.tsx';
import { WizardPage } from './wizard/WizardPage.tsx';
import { ShelfPage } from './pages/ShelfPage.tsx';
import { AdapterPage } from './pages/AdapterPage.tsx';
import { ComparePage } from './pages/ComparePage.tsx';
import { SettingsPage } from './pages/SettingsPage.tsx';

const pages = [
  { id: 'wizard', label: 'New adapter', icon: '✦' },
  { id: 'shelf', label: 'Shelf', icon: '▤' },
  { id: 'compare', label: 'Compare', icon: '⇆' },
  { id: 'system', label: 'This computer', icon: '▣' },
  { id: 'settings', label: 'Settings', icon: '⚙' },
] as const;

export function App() {
  const route = useRoute();
  const [page = 'wizard', detail] = route;
  return (
    <div className="flex min-h-full">
      <nav aria-label="Pages" className="sticky top-0 flex h-screen w-52 shrink-0 flex-col gap-1 border-r border-stone-200 bg-stone-100/60 p-3 dark:border-stone-800 dark:bg-stone-900/60">
        <div className="mb-4 px-2 pt-1 text-lg font-semibold tracking-tight">LoRA Studio</div>
        {pages.map((p) => (
          <a
            key={p.id}
            href={`#/${p.id}`}
            aria-current={page === p.id ? 'page' : undefined}
            className={`flex items-center gap-2 rounded-md px-2 py-1.5 text-sm ${page === p.id ? 'bg-white font-medium shadow-sm dark:bg-stone-800' : 'text-stone-600 hover:bg-stone-200/70 dark:text-stone-400 dark:hover:bg-stone-800/60'}`}
          >
            <span aria-hidden className="w-4 text-center">{p.icon}</span>
            {p.label}
          </a>
        ))}
      </nav>
      <main className="min-w-0 flex-1 p-8">
        <div className="mx-auto max-w-6xl">{renderPage(page, detail)}</div>
      </main>
    </div>
  );
}

function renderPage(page: string, detail: string | undefined) {
  switch (page) {
    case 'system':
      return <SystemPage />;
    case 'wizard':
      return <WizardPage />;
    case 'shelf':
      return detail ? <AdapterPage adapterId={detail} /> : <ShelfPage />;
    case 'compare':
      return <ComparePage key={detail ?? ''} preselect={detail} />;
    case 'settings':
      return <SettingsPage />;
    default:
      navigate('wizard');
      return null;
  }
}
