// Hash routes (#/shelf/42) so the app works from file:// in Electron with no
// server-side routing. A route is the list of path segments after '#/'.
import { useEffect, useState } from 'react';

export type Route = string[];

export function parseRoute(hash: string): Route {
  return hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
}

export function navigate(...segments: (string | number)[]) {
  window.location.hash = '/' + segments.map((s) => encodeURIComponent(String(s))).join('/');
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return route;
}
