import { defineConfig } from 'vitest/config';

// The gateway serves dist/index.html at `/` and the files of dist/assets at `/assets/*`.
// For `npm run dev`, API and WebSocket calls are proxied to a local gateway
// (PORTCULLIS_GATEWAY, default https://127.0.0.1:8443).
const gateway = process.env.PORTCULLIS_GATEWAY ?? 'https://127.0.0.1:8443';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    // Keep every asset a separate file under /assets/ (nothing inlined as data: URLs).
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
  },
  server: {
    proxy: {
      '/api': { target: gateway, changeOrigin: false, secure: false, ws: true },
    },
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
});
