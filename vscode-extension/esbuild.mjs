// Bundles with esbuild. `node esbuild.mjs` builds the extension into dist/extension.js (one CommonJS
// file; `vscode` is provided by the editor). `node esbuild.mjs --tests` compiles each test file into
// out/test/ so `node --test` runs plain JavaScript (faster than a TypeScript loader per test file).
import { build } from "esbuild";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const production = process.argv.includes("--production");

if (process.argv.includes("--tests")) {
  const entryPoints = ["unit", "protocol", "package", "e2e"].flatMap((dir) =>
    readdirSync(join("test", dir))
      .filter((f) => f.endsWith(".test.ts"))
      .map((f) => join("test", dir, f)),
  );
  await build({
    entryPoints,
    outdir: "out/test",
    outbase: "test",
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    packages: "external",
    sourcemap: "inline",
    logLevel: "warning",
  });
} else {
  await build({
    entryPoints: ["src/extension.ts"],
    outfile: "dist/extension.js",
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    external: ["vscode"],
    sourcemap: !production,
    minify: production,
    logLevel: "info",
  });
}
