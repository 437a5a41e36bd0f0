// conformance/ui's driver: an operator's session in the acmehub console,
// in Debian's Chromium through playwright-core. Prints one line per flow
// (PASS name / FAIL name: reason) and exits non-zero when one failed; a
// screenshot of every page is saved under OUT.
//
// Environment (set by conformance/ui): HUB_URL, ADMIN_TOKEN, PEBBLE_DIR_URL, PEBBLE_TLS_CA
// (file), PEBBLE_NEW_ORDER (Pebble's newOrder URL), CERTBOT (a command line
// prefix, JSON array), OUT (screenshot folder), CHROMIUM (default
// /usr/bin/chromium).
import { spawnSync } from "node:child_process";
import { readFileSync, mkdirSync } from "node:fs";
import { chromium, request } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const HUB = env("HUB_URL");
const OUT = env("OUT");
mkdirSync(OUT, { recursive: true });
const SECRET = "dWktY29uZm9ybWFuY2UtdHNpZy1zZWNyZXQtbmV2ZXItc2hvd24=";

let failed = 0;
let shot = 0;
const results = [];

async function flow(name, fn) {
  try {
    await fn();
    results.push(`PASS ${name}`);
    console.log(`PASS ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${String(e.message || e).split("\n")[0]}`);
    console.error(e);
  }
}

function check(ok, why) {
  if (!ok) throw new Error(why);
}

async function screenshot(page, name) {
  shot += 1;
  const file = `${OUT}/${String(shot).padStart(2, "0")}-${name}.png`;
  await page.screenshot({ path: file, fullPage: true });
}

/// The page's HTML as the server sent it (what "view source" shows).
async function source(page, path) {
  const r = await page.request.get(`${HUB}${path}`);
  return r.text();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
// The hub's listener certificate comes from its own CA, which this browser
// profile does not trust; TLS trust is checked by the other suites.
const context = await browser.newContext({
  ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 900 },
});
const page = await context.newPage();
page.on("dialog", (d) => d.accept()); // confirm() before destructive posts
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() === "error") consoleErrors.push(`${m.text()} (${m.location().url})`);
});

async function signIn(p, token) {
  await p.goto(`${HUB}/ui/`);
  check(p.url().endsWith("/ui/login"), `not sent to sign in: ${p.url()}`);
  await p.getByLabel("Admin or instance token").fill(token);
  await p.getByRole("button", { name: "Sign in", exact: true }).click();
  await p.waitForLoadState();
}

await flow("sign-in", async () => {
  await page.goto(`${HUB}/ui/login`);
  await screenshot(page, "sign-in");
  await signIn(page, env("ADMIN_TOKEN"));
  check(page.url().endsWith("/ui/instances"), `after sign-in at ${page.url()}`);
  const cookies = await context.cookies(`${HUB}/ui/`);
  const session = cookies.find((c) => c.name === "__Host-acmehub_session");
  check(session, "no session cookie");
  check(session.secure && session.httpOnly && session.sameSite === "Strict",
    `session cookie attributes: ${JSON.stringify(session)}`);
});

await flow("create-instance", async () => {
  await page.getByLabel("Name", { exact: true }).fill("web");
  await page.getByLabel("Description").fill("web servers");
  await page.getByRole("button", { name: "Create instance" }).click();
  await page.waitForURL(/\/ui\/i\/web\?done=created$/);
  check((await page.getByRole("status").textContent()).includes("Created"), "no notice");
  await screenshot(page, "instance-settings");
  await page.goto(`${HUB}/ui/instances`);
  check(await page.getByRole("link", { name: "web" }).isVisible(), "not listed");
  await screenshot(page, "instances");
});

await flow("ca-account-save-and-test", async () => {
  await page.goto(`${HUB}/ui/i/web/ca-accounts`);
  await page.getByLabel("Name", { exact: true }).fill("pebble");
  await page.getByLabel("Certificate authority").selectOption("custom");
  await page.getByLabel("Directory URL").fill(env("PEBBLE_DIR_URL"));
  await page.getByLabel("Contact email").fill("ops@example.test");
  await page.getByLabel(/Trusted roots/).fill(readFileSync(env("PEBBLE_TLS_CA"), "utf8"));
  await page.getByRole("button", { name: "Save and Test" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  const text = await dialog.textContent();
  check(text.includes("API is available"), `dialog says: ${text.trim().slice(0, 200)}`);
  check(text.includes(env("PEBBLE_NEW_ORDER")), `no newOrder URL in: ${text.trim().slice(0, 400)}`);
  await screenshot(page, "ca-account-test");
  await dialog.getByRole("button", { name: "Close" }).click();
  await page.goto(`${HUB}/ui/i/web/ca-accounts`);
  check((await page.locator("table").textContent()).includes("valid"), "account not valid in the list");
  await screenshot(page, "ca-accounts");
});

await flow("credential-secret-write-only", async () => {
  await page.goto(`${HUB}/ui/i/web/credentials`);
  // Choosing the kind shows its fields (the select submits itself).
  await Promise.all([page.waitForURL(/kind=rfc2136/),
    page.getByLabel("Kind").selectOption("rfc2136")]);
  await page.getByLabel("Name", { exact: true }).fill("bind-primary");
  await page.getByLabel(/^server/).fill("127.0.0.1:53");
  await page.getByLabel(/^key_name/).fill("hub-key");
  await page.getByLabel(/^key \(secret/).fill(SECRET);
  await page.getByRole("button", { name: "Save credential" }).click();
  await page.waitForURL(/credentials\?done=created$/);
  await screenshot(page, "credentials");
  const html = [await page.content(), await source(page, "/ui/i/web/credentials")];
  await page.getByRole("link", { name: "bind-primary" }).click();
  await page.waitForLoadState();
  html.push(await page.content(), await source(page, new URL(page.url()).pathname));
  await screenshot(page, "credential");
  for (const h of html) check(!h.includes(SECRET), "the secret is in a page's source");
  check(html[0].includes("hub-key") || html[2].includes("hub-key"), "config not shown");
});

await flow("dns-zone-binding", async () => {
  await page.goto(`${HUB}/ui/i/web/dns`);
  await page.getByLabel("Zone", { exact: true }).fill("ui.test");
  await page.getByLabel("Credential").selectOption("bind-primary");
  await page.getByRole("button", { name: "Bind zone" }).click();
  await page.waitForURL(/dns\?done=created$/);
  check((await page.locator("table").first().textContent()).includes("ui.test"), "zone not listed");
  await screenshot(page, "dns");
});

let certName = "";
await flow("access-key-and-certbot", async () => {
  await page.goto(`${HUB}/ui/i/web/keys`);
  await page.getByLabel("Name", { exact: true }).fill("fleet");
  await page.getByLabel(/Allowed names/).fill("*.ui.test");
  await page.getByLabel("Validation").selectOption("pre-authorized");
  await page.getByRole("button", { name: "Create access key" }).click();
  await page.locator("#new-hmac").waitFor();
  await screenshot(page, "access-key-created");
  const command = (await page.locator('pre[data-client="certbot"]').textContent()).trim();
  const hmac = (await page.locator("#new-hmac").textContent()).trim();
  check(command.startsWith("certbot certonly --server ") && command.includes(`--eab-hmac-key=${hmac}`),
    `certbot command: ${command}`);
  certName = command.match(/-d (\S+)/)[1];
  // The shown command as pasted, with the run's own folders and no prompts.
  const prefix = JSON.parse(env("CERTBOT"));
  const args = [...prefix.slice(1), ...command.split(/\s+/).slice(1), "--cert-name", "ui"];
  const r = spawnSync(prefix[0], args, { encoding: "utf8", timeout: 180000 });
  console.error(r.stdout, r.stderr);
  check(r.status === 0, `certbot exited ${r.status}: ${(r.stderr || "").trim().split("\n").pop()}`);
  // Shown once: the list has the kid but not the HMAC key.
  await page.goto(`${HUB}/ui/i/web/keys`);
  check(!(await page.content()).includes(hmac), "the HMAC key is shown again");
  await screenshot(page, "access-keys");
});

await flow("inventory-and-revoke", async () => {
  check(certName, "no certificate was issued");
  await page.goto(`${HUB}/ui/i/web/certificates`);
  const row = page.locator("tr", { hasText: certName });
  await row.first().waitFor();
  const days = Number((await row.locator(".days").textContent()).trim());
  check(days >= 1 && (await row.locator(".days").getAttribute("class")).includes("days-ok"),
    `days remaining ${days}`);
  await screenshot(page, "certificates");
  await row.getByRole("link", { name: certName }).click();
  await page.waitForLoadState();
  await page.getByLabel("Reason").selectOption("4");
  await page.getByRole("button", { name: "Revoke certificate" }).click();
  await page.waitForURL(/done=revoked$/);
  check((await page.locator(".facts").textContent()).includes("revoked"), "not revoked");
  await screenshot(page, "certificate-revoked");
  await page.goto(`${HUB}/ui/i/web/orders`);
  check((await page.locator("table").textContent()).includes(certName), "order not listed");
  await screenshot(page, "orders");
  await page.goto(`${HUB}/ui/events?instance=web`);
  const log = await page.locator("table").textContent();
  check(log.includes("certificate.revoke") && log.includes("access-key.create"),
    "the audit log lacks the key's creation or the revocation");
  await screenshot(page, "events");
});

await flow("csrf-refused", async () => {
  // The browser's own session, a post without the form token.
  const r = await page.request.post(`${HUB}/ui/i/web/keys`, {
    form: { name: "forged", allowed_identifiers: "x.ui.test" },
    maxRedirects: 0,
  });
  check(r.status() === 403, `post without a form token: ${r.status()}`);
  const keys = await source(page, "/ui/i/web/keys");
  check(!keys.includes(">forged<"), "the forged key was made");
});

await flow("read-token", async () => {
  // A read-only token of the instance, made through the admin API.
  const api = await request.newContext({
    ignoreHTTPSErrors: true,
    extraHTTPHeaders: { Authorization: `Bearer ${env("ADMIN_TOKEN")}` },
  });
  const made = await api.post(`${HUB}/api/v1/tokens`, {
    data: { name: "viewer", scope: "instance:web", role: "read" },
  });
  check(made.status() === 201, `creating the read token: ${made.status()}`);
  const readToken = (await made.json()).token;
  await api.dispose();
  const viewer = await browser.newContext({ ignoreHTTPSErrors: true });
  const p = await viewer.newPage();
  await signIn(p, readToken);
  check(p.url().endsWith("/ui/i/web"), `read token landed at ${p.url()}`);
  for (const path of ["/ui/i/web/keys", "/ui/i/web/ca-accounts", "/ui/i/web/certificates"]) {
    await p.goto(`${HUB}${path}`);
    const buttons = await p.getByRole("button").allTextContents();
    const writes = buttons.filter((b) => !["Sign out", "Copy", "Filter"].includes(b.trim()));
    check(writes.length === 0, `${path} shows write buttons: ${writes.join(", ")}`);
  }
  await screenshot(p, "read-token");
  const html = await (await p.request.get(`${HUB}/ui/i/web/keys`)).text();
  const csrf = html.match(/name="csrf" value="([^"]+)"/)[1];
  const r = await p.request.post(`${HUB}/ui/i/web/keys`, {
    form: { csrf, name: "viewer-key", allowed_identifiers: "x.ui.test" },
    maxRedirects: 0,
  });
  check(r.status() === 403, `read token's post: ${r.status()}`);
  await viewer.close();
});

await flow("console-user", async () => {
  // A console user with a password, made through the admin API.
  const api = await request.newContext({
    ignoreHTTPSErrors: true,
    extraHTTPHeaders: { Authorization: `Bearer ${env("ADMIN_TOKEN")}` },
  });
  const password = "a long console passphrase";
  const made = await api.post(`${HUB}/api/v1/users`, {
    data: { name: "operator", password, scope: "instance:web", role: "write" },
  });
  check(made.status() === 201, `creating the user: ${made.status()}`);
  check(!(await made.text()).includes(password), "the password came back");
  await api.dispose();
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const p = await ctx.newPage();
  await p.goto(`${HUB}/ui/login`);
  await p.getByLabel("User name").fill("operator");
  await p.getByLabel("Password").fill(password);
  await p.getByRole("button", { name: "Sign in as user" }).click();
  await p.waitForURL(/\/ui\/i\/web$/);
  check((await p.locator(".who").textContent()).includes("operator"), "not signed in as operator");
  await screenshot(p, "console-user");
  await ctx.close();
});

await flow("phone-width", async () => {
  const phone = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 } });
  await phone.addCookies(await context.cookies());
  const p = await phone.newPage();
  for (const path of ["/ui/i/web/certificates", "/ui/i/web/ca-accounts", "/ui/i/web/keys"]) {
    await p.goto(`${HUB}${path}`);
    check(p.url().endsWith(path), `${path} sent the phone to ${p.url()}`);
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `${path} is ${overflow}px wider than a phone`);
    await screenshot(p, `phone-${path.split("/").pop()}`);
  }
  await phone.close();
});

await flow("accessibility", async () => {
  // axe-core's WCAG 2 A and AA rules on every page; the audit script is
  // injected, so this context alone lets it past the page's CSP.
  const audit = await browser.newContext({ ignoreHTTPSErrors: true, bypassCSP: true });
  const axe = new URL("./node_modules/axe-core/axe.min.js", import.meta.url).pathname;
  const p = await audit.newPage();
  const pages = ["/ui/login"];
  await p.goto(`${HUB}/ui/login`);
  const found = [];
  const run = async (path) => {
    await p.addScriptTag({ path: axe });
    const r = await p.evaluate(() =>
      window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] } }));
    check(r.passes.length >= 10, `${path}: axe checked only ${r.passes.length} rules`);
    for (const v of r.violations) {
      if (v.impact === "serious" || v.impact === "critical") {
        found.push(`${path}: ${v.id} (${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")})`);
      }
    }
  };
  await run("/ui/login");
  await audit.addCookies(await context.cookies());
  for (const path of ["/ui/instances", "/ui/i/web", "/ui/i/web/ca-accounts", "/ui/i/web/credentials?kind=rfc2136",
    "/ui/i/web/dns", "/ui/i/web/keys", "/ui/i/web/certificates", "/ui/i/web/orders", "/ui/events", "/ui/access"]) {
    pages.push(path);
    await p.goto(`${HUB}${path}`);
    check(!p.url().endsWith("/ui/login"), `${path} asked to sign in`);
    await run(path);
  }
  await audit.close();
  check(found.length === 0, `${found.length} serious WCAG findings: ${found.join("; ")}`);
});

await flow("no-console-errors", async () => {
  check(consoleErrors.length === 0, `browser console: ${consoleErrors.join(" | ")}`);
});

await browser.close();
console.log(`${results.length} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
