// Builds the renderer (renderer/) into dist/renderer. base './' makes every
// asset URL relative, so the same build loads from file:// inside Electron and
// from the browser-mode server at any path.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';
import tailwindcss from '@tailwindcss/vite';
import { fileURLToPath } from 'node:url';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  root: here('./renderer'),
  base: './',
  plugins: [react(), tailwindcss()],
  build: {
    outDir: here('./dist/renderer'),
    emptyOutDir: true,
    // recharts alone is ~400 kB; one bundle is fine for a local desktop app.
    chunkSizeWarningLimit: 1500,
  },
});
