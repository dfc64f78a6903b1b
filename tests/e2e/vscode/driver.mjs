// Drives VS Code (code-server) in Debian's Chromium through playwright-core, like a person would:
// open calc.py, Ctrl+. on `return a - b`, pick "Keel: implement", wait for the pending step's lens,
// screenshot it, click "Keel: Accept", save. Case "unsaved_run": accept the edit, then the `run`
// proposed after it, and never save. Writes what it saw as JSON to $KEEL_E2E_OUT; the Rust test
// (tests/e2e/vscode.rs) asserts on it, on the file on disk and on the store.
//
// env: KEEL_E2E_URL (code-server URL with ?folder=), KEEL_E2E_OUT, KEEL_E2E_SCREENSHOT,
//      KEEL_E2E_DEBUG_DIR (screenshots on failure), KEEL_E2E_CHROMIUM (default /usr/bin/chromium)
import { readFileSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const url = process.env.KEEL_E2E_URL;
const out = process.env.KEEL_E2E_OUT;
const shot = process.env.KEEL_E2E_SCREENSHOT;
const debugDir = process.env.KEEL_E2E_DEBUG_DIR ?? "/tmp";
const facts = {};
const steps = [];
const log = (s) => {
  steps.push(s);
  console.log(`[driver] ${s}`);
};

const browser = await chromium.launch({
  executablePath: process.env.KEEL_E2E_CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  headless: true,
});
let page;
let error;
let editor;

async function openCalc() {
  await page.locator(".monaco-workbench").click({ position: { x: 640, y: 360 } });
  await page.keyboard.press("Control+P");
  await page.locator(".quick-input-widget input").waitFor();
  await page.keyboard.type("calc.py");
  await page.locator(".quick-input-list .monaco-list-row", { hasText: "calc.py" }).first().waitFor();
  await page.keyboard.press("Enter");
  editor = page.locator(".editor-instance .monaco-editor").first();
  await editor.locator(".view-line", { hasText: "return a - b" }).waitFor();
  log("calc.py open");
}

// Cursor on line 2 (Go to Line), then Ctrl+. and pick the Keel action from the quick fix menu.
async function pickImplement() {
  await page.locator(".view-line", { hasText: "return a - b" }).click();
  await page.keyboard.press("Control+G");
  await page.locator(".quick-input-widget input").waitFor();
  await page.keyboard.type("2:5");
  await page.keyboard.press("Enter");
  await page.waitForTimeout(300);
  let item;
  for (let attempt = 0; attempt < 10; attempt++) {
    await page.keyboard.press("Control+.");
    item = page.locator(".action-widget .monaco-list-row", { hasText: "Keel: implement" });
    try {
      await item.first().waitFor({ timeout: 3000 });
      break;
    } catch {
      await page.keyboard.press("Escape");
      await page.waitForTimeout(1000);
    }
  }
  facts.menu = (await page.locator(".action-widget .monaco-list-row").allInnerTexts()).map((s) => s.trim());
  log(`quick fix menu: ${JSON.stringify(facts.menu)}`);
  await item.first().click();
  log("picked Keel: implement");
}

// What the hunk preview draws: the text after lines (injected text or a ::after pseudo-element)
// and the lines struck through.
async function preview() {
  return await page.evaluate(() => {
    const after = [];
    const struck = [];
    document.querySelectorAll(".editor-instance .view-lines .view-line").forEach((line, i) => {
      const text = line.innerText.replace(/\u00a0/g, " ");
      line.querySelectorAll("span").forEach((el) => {
        const c = getComputedStyle(el, "::after").content;
        if (c && c !== "none" && c !== "normal" && c !== '""') after.push(c.replace(/^"|"$/g, "").replace(/\u00a0/g, " "));
        if (getComputedStyle(el).textDecorationLine.includes("line-through") && el.innerText.trim() !== "") struck.push(text.trim());
      });
      after.push(...[...line.querySelectorAll("span[class*='ced-'], span.inline-decoration-after")].map((e) => e.innerText.replace(/\u00a0/g, " ")));
      void i;
    });
    return { after: [...new Set(after)].filter((s) => s.trim() !== ""), struck: [...new Set(struck)] };
  });
}

async function cursorLine() {
  const t = await page.locator(".statusbar-item", { hasText: /Ln \d+, Col \d+/ }).first().innerText();
  return Number(/Ln (\d+)/.exec(t)[1]);
}

async function gotoLine(n) {
  await page.keyboard.press("Control+G");
  await page.locator(".quick-input-widget input").waitFor();
  await page.keyboard.type(String(n));
  await page.keyboard.press("Enter");
  await page.waitForTimeout(300);
}

async function waitPreview(what, cond) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const p = await preview();
    if (cond(p)) return p;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(p)}`);
    await page.waitForTimeout(250);
  }
}

// The editor still takes typing: a comment typed at the end of the file shows up.
async function editorWorks() {
  await editor.locator(".view-line", { hasText: "return a" }).first().click();
  await page.keyboard.press("Control+End");
  await page.keyboard.press("Enter");
  await page.keyboard.type("# still here");
  await editor.locator(".view-line", { hasText: "# still here" }).waitFor({ timeout: 10000 });
  log("the editor still works");
  return true;
}
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  page = await ctx.newPage();
  page.setDefaultTimeout(60000);
  log(`open ${url}`);
  await page.goto(url);
  await page.locator(".monaco-workbench").waitFor();
  log("workbench up");

  // The extension activates and the server starts: the status bar item says so.
  const status = page.locator(".statusbar-item", { hasText: "Keel:" });
  await status.first().waitFor();
  facts.status_at_start = (await status.first().innerText()).trim();
  log(`status: ${facts.status_at_start}`);

  if (process.env.KEEL_E2E_CASE === "no_binary") {
    // No keel-lsp: an error that names the setting, and a workbench that still works.
    const toast = page.locator(".notification-toast", { hasText: "keel.serverPath" });
    await toast.first().waitFor();
    facts.notification = (await toast.first().innerText()).trim();
    facts.status = (await status.first().innerText()).trim();
    await openCalc();
    facts.editor_works = true;
    throw "done";
  }

  // Open calc.py through Quick Open.
  await openCalc();
  await pickImplement();
  if (process.env.KEEL_E2E_CASE === "unreachable") {
    // The model endpoint does not answer: an error that names it, the status says so, the editor works.
    const toast = page.locator(".notification-toast", { hasText: "unreachable" });
    await toast.first().waitFor();
    facts.notification = (await toast.first().innerText()).trim();
    await page.locator(".statusbar-item", { hasText: "Keel: error" }).first().waitFor();
    facts.status = (await status.first().innerText()).trim();
    facts.editor_works = await editorWorks();
    throw "done";
  }
  // The pending step: lenses over the edited line.
  const accept = page.locator(".codelens-decoration a", { hasText: "Keel: Accept" });
  await accept.first().waitFor();
  facts.lenses = (await page.locator(".codelens-decoration a").allInnerTexts()).map((s) => s.trim());
  await page.locator(".statusbar-item", { hasText: "pending" }).first().waitFor();
  facts.status_pending = (await status.first().innerText()).trim();
  log(`lenses: ${JSON.stringify(facts.lenses)}, status: ${facts.status_pending}`);
  if (process.env.KEEL_E2E_CASE === "crash") {
    // keel-lsp dies (SIGKILL) with a step pending: a message that says so with a Restart button, the
    // status bar says so, Restart brings up a new server, and the editor kept working throughout.
    const pidfile = process.env.KEEL_E2E_PIDFILE;
    facts.pid_before = Number(readFileSync(pidfile, "utf8").trim());
    process.kill(facts.pid_before, "SIGKILL");
    log(`killed keel-lsp ${facts.pid_before}`);
    const toast = page.locator(".notification-toast", { hasText: "stopped unexpectedly" });
    await toast.first().waitFor();
    facts.notification = (await toast.first().innerText()).trim();
    await page.locator(".statusbar-item", { hasText: "server stopped" }).first().waitFor();
    facts.status_crashed = (await status.first().innerText()).trim();
    facts.editor_works = await editorWorks();
    await toast.first().locator(".monaco-button", { hasText: "Restart" }).first().click();
    log("clicked Restart");
    const deadline = Date.now() + 60000;
    for (;;) {
      const pid = Number(readFileSync(pidfile, "utf8").trim());
      if (pid !== facts.pid_before) {
        facts.pid_after = pid;
        break;
      }
      if (Date.now() > deadline) throw new Error("keel-lsp did not restart");
      await page.waitForTimeout(200);
    }
    await page.locator(".statusbar-item", { hasText: "Keel: idle" }).first().waitFor();
    facts.status_restarted = (await status.first().innerText()).trim();
    throw "done";
  }
  if (process.env.KEEL_E2E_CASE === "review") {
    // The inline preview of a three-hunk edit: lenses per hunk, added text after the lines, removed
    // lines struck through; Alt+] / Alt+[ move; "Another" replaces it; Alt+Y keeps hunk 1, Alt+N
    // drops hunk 2, the lens keeps hunk 3; exactly hunks 1 and 3 land.
    const keep = page.locator(".codelens-decoration a", { hasText: "Keel: Keep hunk" });
    await keep.nth(2).waitFor();
    facts.preview_first = await waitPreview("the first preview", (p) => p.after.some((a) => a.includes("a: int")));
    facts.review_lenses = (await page.locator(".codelens-decoration a").allInnerTexts()).map((s) => s.trim());
    log(`preview: ${JSON.stringify(facts.preview_first)}; lenses ${JSON.stringify(facts.review_lenses)}`);
    await editor.locator(".view-lines").click();
    await gotoLine(1);
    facts.jumps = [];
    for (const key of ["Alt+BracketRight", "Alt+BracketRight", "Alt+BracketRight", "Alt+BracketLeft"]) {
      await page.keyboard.press(key);
      await page.waitForTimeout(300);
      facts.jumps.push(await cursorLine());
    }
    log(`jumps: ${JSON.stringify(facts.jumps)}`);
    await page.locator(".codelens-decoration a", { hasText: "Keel: Another" }).first().click();
    facts.preview_second = await waitPreview("the second preview", (p) => p.after.some((a) => a.includes("a: float")) && !p.after.some((a) => a.includes("a: int")));
    log(`preview after another: ${JSON.stringify(facts.preview_second)}`);
    await page.mouse.move(10, 700);
    await page.waitForTimeout(500);
    if (shot && shot !== "") {
      await page.screenshot({ path: shot });
      log(`screenshot ${shot}`);
    }
    await editor.locator(".view-lines").click();
    await gotoLine(2);
    await page.keyboard.press("Alt+Y");
    await page.locator(".codelens-decoration a", { hasText: "(kept)" }).first().waitFor();
    facts.cursor_after_keep = await cursorLine();
    facts.lenses_after_keep = (await page.locator(".codelens-decoration a").allInnerTexts()).map((s) => s.trim());
    log(`kept hunk 1; lenses ${JSON.stringify(facts.lenses_after_keep)}`);
    await page.keyboard.press("Alt+N");
    await page.locator(".codelens-decoration a", { hasText: "(dropped)" }).first().waitFor();
    facts.cursor_after_drop = await cursorLine();
    facts.lenses_after_drop = (await page.locator(".codelens-decoration a").allInnerTexts()).map((s) => s.trim());
    log(`dropped hunk 2; lenses ${JSON.stringify(facts.lenses_after_drop)}`);
    await page.locator(".codelens-decoration a", { hasText: "Keel: Keep hunk 3/3" }).first().click();
    await editor.locator(".view-line", { hasText: "return a + b" }).waitFor();
    await editor.locator(".view-line", { hasText: "def neg(a: float):" }).waitFor();
    await page.locator(".statusbar-item", { hasText: "finished" }).first().waitFor();
    facts.status_after = (await status.first().innerText()).trim();
    await editor.locator(".view-lines").click();
    await page.keyboard.press("Control+S");
    await page.locator(".tab.active:not(.dirty)").first().waitFor();
    await page.waitForTimeout(500);
    facts.preview_after = await preview();
    facts.lenses_after = (await page.locator(".codelens-decoration a").allInnerTexts()).map((s) => s.trim());
    log("reviewed and saved");
    throw "done";
  }
  if (process.env.KEEL_E2E_CASE === "unsaved_run") {
    // Accept the edit, leave it unsaved, accept the `run` that reads the file; never save.
    await accept.first().click();
    await editor.locator(".view-line", { hasText: "return a + b" }).waitFor();
    log("edit applied");
    const acceptRun = page.locator(".codelens-decoration a", { hasText: /Keel: Accept\W+run `/ });
    await acceptRun.first().waitFor();
    facts.run_lens = (await acceptRun.first().innerText()).trim();
    facts.dirty_before_run = (await page.locator(".tab.active.dirty").count()) > 0;
    log(`run proposed: ${facts.run_lens}; unsaved: ${facts.dirty_before_run}`);
    await acceptRun.first().click();
    // The container starts, runs the command, goes; then the model finishes.
    await page.locator(".statusbar-item", { hasText: "finished" }).first().waitFor({ timeout: 120000 });
    facts.status_after = (await status.first().innerText()).trim();
    facts.dirty_at_end = (await page.locator(".tab.active.dirty").count()) > 0;
    facts.editor_lines = (await editor.locator(".view-line").allInnerTexts()).map((s) => s.replace(/\u00a0/g, " "));
    log("finished, nothing saved");
    throw "done";
  }
  await page.mouse.move(10, 700);
  await page.waitForTimeout(500);
  if (shot && shot !== "") {
    await page.screenshot({ path: shot });
    log(`screenshot ${shot}`);
  }

  // Accept from the lens; the edit lands in the editor; save it.
  await accept.first().click();
  await editor.locator(".view-line", { hasText: "return a + b" }).waitFor();
  log("edit applied");
  await page.locator(".statusbar-item", { hasText: "finished" }).first().waitFor();
  facts.status_after = (await status.first().innerText()).trim();
  await editor.locator(".view-lines").click();
  await page.keyboard.press("Control+S");
  await page.locator(".tab.active:not(.dirty)").first().waitFor();
  await page.waitForTimeout(500);
  facts.lenses_after = (await page.locator(".codelens-decoration a").allInnerTexts()).map((s) => s.trim());
  facts.editor_lines = (await editor.locator(".view-line").allInnerTexts()).map((s) => s.replace(/\u00a0/g, " "));
  log("saved");
} catch (e) {
  if (e !== "done") {
    error = String(e && e.stack ? e.stack : e);
    if (page) {
      try {
        await page.screenshot({ path: `${debugDir}/vscode-failure.png` });
      } catch {}
    }
  }
} finally {
  await browser.close();
}
writeFileSync(out, JSON.stringify({ facts, steps, error }, null, 1));
process.exit(error ? 1 : 0);
