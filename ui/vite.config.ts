/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The gateway serves dist/ at / (history-API fallback) and dist/assets/ with long cache
// headers; `npm run dev` proxies the API to a gateway on 127.0.0.1:8000.
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", assetsDir: "assets", sourcemap: false, chunkSizeWarningLimit: 2000 },
  server: {
    proxy: {
      "/graphql": { target: "http://127.0.0.1:8000", ws: true },
      "/health": "http://127.0.0.1:8000",
    },
  },
  test: { environment: "jsdom", include: ["src/**/*.test.{ts,tsx}"], css: true },
});
