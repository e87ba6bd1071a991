// Drives a real browser against debrief: generates the TypeScript-free ES
// client from proto/ with @bufbuild/protoc-gen-es (through buf), bundles
// browser/page.js with esbuild, serves the page from two origins of its own
// and runs it in headless Chromium through playwright-core.
//
//   node browser.mjs API_URL ALLOWED_PORT REFUSED_PORT
//
// API_URL lists http://127.0.0.1:ALLOWED_PORT in DEBRIEF_CORS_ORIGINS and
// not REFUSED_PORT's origin. Prints one JSON report on stdout.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const [api, allowedPort, refusedPort] = process.argv.slice(2);

const work = mkdtempSync(join(tmpdir(), "debrief-browser-"));
try {
  // Generate the client from proto/ (nothing generated is committed).
  const gen = join(work, "gen");
  execFileSync(join(here, "node_modules", ".bin", "buf"), ["generate", "--template", join(here, "browser", "buf.gen.yaml"), "-o", gen], {
    cwd: root,
    env: { ...process.env, PATH: `${join(here, "node_modules", ".bin")}:${process.env.PATH}` },
    stdio: ["ignore", "inherit", "inherit"],
  });
  await esbuild.build({
    entryPoints: [join(here, "browser", "page.js")],
    bundle: true,
    format: "esm",
    target: "es2022",
    outfile: join(work, "page.js"),
    alias: { "@gen": gen },
    nodePaths: [join(here, "node_modules")],
    logLevel: "warning",
  });
  const files = {
    "/": ["text/html", '<!doctype html><meta charset="utf-8"><title>debrief</title><script type="module" src="/page.js"></script>'],
    "/page.js": ["text/javascript", readFileSync(join(work, "page.js"))],
    "/favicon.ico": ["image/svg+xml", '<svg xmlns="http://www.w3.org/2000/svg"/>'],
  };
  const serve = (port) =>
    new Promise((resolve) => {
      const server = createServer((request, response) => {
        const file = files[new URL(request.url, "http://page").pathname];
        response.writeHead(file ? 200 : 404, { "content-type": file?.[0] ?? "text/plain" });
        response.end(file?.[1] ?? "not found");
      });
      server.listen(Number(port), "127.0.0.1", () => resolve(server));
    });
  const servers = [await serve(allowedPort), await serve(refusedPort)];

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // As root Chromium runs only without its sandbox; containers often
    // have a small /dev/shm.
    args: ["--disable-dev-shm-usage", ...(process.getuid?.() === 0 ? ["--no-sandbox"] : [])],
  });
  try {
    const run = async (port, scenario) => {
      const page = await browser.newPage();
      const console = [];
      page.on("console", (m) => {
        console.push(m.text());
        if (process.env.DEBUG) process.stderr.write(`page: ${m.text()}\n`);
      });
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.waitForFunction((name) => typeof window[name] === "function", scenario);
      try {
        return await page.evaluate(([name, url]) => window[name](url), [scenario, api]);
      } catch (e) {
        throw new Error(`${scenario} failed: ${e.message}\nconsole: ${console.join("\n")}`);
      } finally {
        await page.close();
      }
    };
    const report = {
      browser: browser.version(),
      allowed: await run(allowedPort, "allowedOrigin"),
      refused: await run(refusedPort, "refusedOrigin"),
    };
    writeFileSync(1, `${JSON.stringify(report)}\n`);
  } finally {
    await browser.close();
    servers.forEach((s) => s.close());
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
