import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The controller serves dist/ (index.html and hashed files under assets/) itself.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 600 },
});
