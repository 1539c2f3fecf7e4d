import react from '@vitejs/plugin-react';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

// Built into dist/console by `npm run build`; the server serves it at /console (src/console/).
export default defineConfig({
  root,
  base: '/console/',
  plugins: [react()],
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    assetsDir: 'assets',
    // the server's Content-Security-Policy forbids inline scripts and data: scripts
    assetsInlineLimit: 0,
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
    // libraries change less often than the console: their own files, cached apart
    rollupOptions: {
      output: {
        manualChunks(id: string) {
          if (!id.includes('node_modules')) return undefined;
          return /recharts|d3-|victory|@mantine\/charts/.test(id) ? 'charts' : 'vendor';
        },
      },
    },
  },
});
