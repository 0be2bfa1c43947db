// Drives headless Chromium (Debian's /usr/bin/chromium; no browser download) to the
// example page and prints what the page wrote into <pre id="result"> as one JSON line on
// stdout. Exit status: 0 when the page finished (`data-state="done"`), 1 otherwise.
//
//   node test/browser.mjs <page URL> [--chromium PATH] [--trust-cert PEM_FILE]...
//
// --trust-cert: a server certificate (PEM; the first one in the file) Chromium accepts
// though no CA it trusts signed it, e.g. the gateway's throwaway development certificate
// of `economy up --tls` (`<data-dir>/tls/server.pem`). Chromium is given the base64
// SHA-256 of its SubjectPublicKeyInfo (`--ignore-certificate-errors-spki-list`), so only
// that key is accepted; every other certificate error still fails.
// tests/browser.rs runs this; the page's URL carries the gateway and token.

import { X509Certificate, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const TIMEOUT_MS = 60_000;

function parseArgs(argv) {
  const options = { page: undefined, chromium: process.env.CHROMIUM ?? "/usr/bin/chromium", trust: [] };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index];
    if (arg === "--chromium") options.chromium = argv[++index];
    else if (arg === "--trust-cert") options.trust.push(argv[++index]);
    else if (options.page === undefined) options.page = arg;
    else throw new Error(`unexpected argument ${arg}`);
  }
  if (!options.page) throw new Error("usage: node test/browser.mjs <page URL> [--chromium PATH] [--trust-cert PEM]");
  return options;
}

/** The base64 SHA-256 of the SubjectPublicKeyInfo of the PEM file's first certificate. */
function spkiHash(pemFile) {
  const spki = new X509Certificate(readFileSync(pemFile)).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const hashes = options.trust.map(spkiHash);
  const args = hashes.length ? [`--ignore-certificate-errors-spki-list=${hashes.join(",")}`] : [];
  const browser = await chromium.launch({ executablePath: options.chromium, headless: true, args });
  try {
    const page = await browser.newPage();
    page.on("console", (message) => console.error(`[page ${message.type()}] ${message.text()}`));
    page.on("pageerror", (error) => console.error(`[page error] ${error.message}`));
    await page.goto(options.page, { timeout: TIMEOUT_MS });
    const result = page.locator("#result[data-state]");
    await result.waitFor({ timeout: TIMEOUT_MS });
    const state = await result.getAttribute("data-state");
    const text = await result.textContent();
    console.log(JSON.stringify({ state, result: JSON.parse(text ?? "null") }));
    return state === "done" ? 0 : 1;
  } finally {
    await browser.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
