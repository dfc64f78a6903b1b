// The inline preview of a pending edit and its review hunk by hunk.
//
// The hunks come from keel-lsp (`keel/pending`, field `hunks`). Each is drawn in the editor of the
// file it edits: the removed lines red and struck through, the added lines as text after the
// hunk's last line (VS Code has no API for lines that are not in the document; the hover shows the
// hunk whole), and lenses over it: "Keep hunk i/n" and "Drop hunk". Once every hunk is decided the
// answer goes back as one `keel.step.accept {step, hunks: [kept]}` (none kept: `keel.step.reject`).
// A new proposal ("another") replaces the preview; an answer or the episode's end clears it.
import * as vscode from "vscode";

export interface Hunk {
  index: number;
  line: number;
  removed: string[];
  added: string[];
}

interface Review {
  step: string;
  hunks: Hunk[];
  /// index → kept (true) or dropped (false); undecided hunks are absent.
  kept: Map<number, boolean>;
}

export interface ReviewHost {
  /// `keel/pending` for one document; undefined when the server is not running.
  pending(uri: string): Promise<{ step: string; tool: string; hunks?: Hunk[] }[] | undefined>;
  execute(command: string, args: Record<string, unknown>): Promise<unknown>;
}

const reviews = new Map<string, Review>();
const lensChanged = new vscode.EventEmitter<void>();

const removedType = vscode.window.createTextEditorDecorationType({
  isWholeLine: true,
  backgroundColor: new vscode.ThemeColor("diffEditor.removedLineBackground"),
  textDecoration: "line-through",
  overviewRulerColor: new vscode.ThemeColor("editorOverviewRuler.deletedForeground"),
  overviewRulerLane: vscode.OverviewRulerLane.Left,
});
const addedType = vscode.window.createTextEditorDecorationType({
  after: {
    color: new vscode.ThemeColor("gitDecoration.addedResourceForeground"),
    backgroundColor: new vscode.ThemeColor("diffEditor.insertedLineBackground"),
    margin: "0 0 0 2em",
  },
});
const keptType = vscode.window.createTextEditorDecorationType({
  after: { color: new vscode.ThemeColor("gitDecoration.addedResourceForeground"), margin: "0 0 0 1em" },
});
const droppedType = vscode.window.createTextEditorDecorationType({
  after: { color: new vscode.ThemeColor("disabledForeground"), margin: "0 0 0 1em" },
});

export function review(uri: string): { step: string; hunks: Hunk[]; kept: Record<number, boolean> } | undefined {
  const r = reviews.get(uri);
  return r && { step: r.step, hunks: r.hunks, kept: Object.fromEntries(r.kept) };
}

/// Where a hunk is shown: its first removed line, or the line its added lines go before.
function anchor(doc: vscode.TextDocument, h: Hunk): number {
  return Math.max(0, Math.min(h.line, doc.lineCount - 1));
}

function hoverOf(h: Hunk, n: number): vscode.MarkdownString {
  const body = [...h.removed.map((l) => `- ${l}`), ...h.added.map((l) => `+ ${l}`)].join("\n");
  const md = new vscode.MarkdownString(`**Keel: hunk ${h.index + 1}/${n}**\n\n`);
  md.appendCodeblock(body, "diff");
  return md;
}

export function draw(editor: vscode.TextEditor) {
  const doc = editor.document;
  const r = reviews.get(doc.uri.toString());
  const removed: vscode.DecorationOptions[] = [];
  const added: vscode.DecorationOptions[] = [];
  const kept: vscode.DecorationOptions[] = [];
  const dropped: vscode.DecorationOptions[] = [];
  for (const h of r?.hunks ?? []) {
    const n = r!.hunks.length;
    const choice = r!.kept.get(h.index);
    const hover = hoverOf(h, n);
    if (choice !== false) {
      for (let k = 0; k < h.removed.length; k++) {
        const line = h.line + k;
        if (line < doc.lineCount) removed.push({ range: doc.lineAt(line).range, hoverMessage: hover });
      }
    }
    const last = h.removed.length > 0 ? Math.min(h.line + h.removed.length - 1, doc.lineCount - 1) : Math.max(0, Math.min(h.line - 1, doc.lineCount - 1));
    const end = doc.lineAt(last).range.end;
    if (choice === undefined && h.added.length > 0) {
      const text = `+ ${h.added.join("  ⏎  ")}`;
      added.push({ range: new vscode.Range(end, end), hoverMessage: hover, renderOptions: { after: { contentText: text } } });
    } else if (choice !== undefined) {
      const text = choice ? `✓ hunk ${h.index + 1}/${n} kept${h.added.length ? `: + ${h.added.join("  ⏎  ")}` : ""}` : `✗ hunk ${h.index + 1}/${n} dropped`;
      (choice ? kept : dropped).push({ range: new vscode.Range(end, end), hoverMessage: hover, renderOptions: { after: { contentText: text } } });
    } else {
      // A hunk that only removes lines: say so after them.
      added.push({ range: new vscode.Range(end, end), hoverMessage: hover, renderOptions: { after: { contentText: "− (removed)" } } });
    }
  }
  editor.setDecorations(removedType, removed);
  editor.setDecorations(addedType, added);
  editor.setDecorations(keptType, kept);
  editor.setDecorations(droppedType, dropped);
}

function redraw(uri?: string) {
  for (const e of vscode.window.visibleTextEditors) {
    if (!uri || e.document.uri.toString() === uri) draw(e);
  }
  lensChanged.fire();
  const ed = vscode.window.activeTextEditor;
  void vscode.commands.executeCommand("setContext", "keel.reviewing", !!(ed && reviews.has(ed.document.uri.toString())));
}

/// Asks the server for each visible document's pending edit and redraws; a new step resets the choices.
export async function refresh(host: ReviewHost) {
  const uris = new Set(vscode.window.visibleTextEditors.filter((e) => e.document.uri.scheme === "file").map((e) => e.document.uri.toString()));
  for (const u of reviews.keys()) uris.add(u);
  for (const uri of uris) {
    const steps = await host.pending(uri);
    const s = (steps ?? []).find((x) => x.tool === "edit" && Array.isArray(x.hunks) && x.hunks.length > 0);
    if (!s) {
      reviews.delete(uri);
    } else {
      const old = reviews.get(uri);
      reviews.set(uri, { step: s.step, hunks: s.hunks!, kept: old && old.step === s.step ? old.kept : new Map() });
    }
  }
  redraw();
}

export function clearAll() {
  reviews.clear();
  redraw();
}

/// The hunk at the cursor: the one whose lines hold it, else the next below, else the last.
function hunkAt(r: Review, line: number): Hunk {
  for (const h of r.hunks) {
    if (line >= h.line && line <= h.line + Math.max(h.removed.length, 1) - 1) return h;
  }
  return r.hunks.find((h) => h.line > line) ?? r.hunks[r.hunks.length - 1];
}

function current(): { editor: vscode.TextEditor; r: Review } | undefined {
  const editor = vscode.window.activeTextEditor;
  const r = editor && reviews.get(editor.document.uri.toString());
  if (!editor || !r) {
    void vscode.window.showInformationMessage("Keel: no pending edit to review in this editor.");
    return undefined;
  }
  return { editor, r };
}

function reveal(editor: vscode.TextEditor, h: Hunk) {
  const line = anchor(editor.document, h);
  const p = new vscode.Position(line, 0);
  editor.selection = new vscode.Selection(p, p);
  editor.revealRange(new vscode.Range(p, p), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
}

export function jump(dir: 1 | -1) {
  const c = current();
  if (!c) return;
  const line = c.editor.selection.active.line;
  const hs = c.r.hunks;
  const h = dir > 0 ? (hs.find((x) => x.line > line) ?? hs[0]) : ([...hs].reverse().find((x) => x.line < line) ?? hs[hs.length - 1]);
  reveal(c.editor, h);
}

/// Keeps or drops a hunk (by `index` from a lens, else the one at the cursor), moves to the next
/// undecided one; the last decision sends the answer.
export async function decide(host: ReviewHost, keep: boolean, arg?: { uri?: string; step?: string; index?: number }) {
  let editor = vscode.window.activeTextEditor;
  if (arg?.uri) editor = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === arg.uri) ?? editor;
  const uri = arg?.uri ?? editor?.document.uri.toString();
  const r = uri ? reviews.get(uri) : undefined;
  if (!r || !editor || (arg?.step && arg.step !== r.step)) {
    void vscode.window.showInformationMessage("Keel: no pending edit to review in this editor.");
    return;
  }
  const h = typeof arg?.index === "number" ? r.hunks.find((x) => x.index === arg.index) : hunkAt(r, editor.selection.active.line);
  if (!h) return;
  r.kept.set(h.index, keep);
  if (r.hunks.every((x) => r.kept.has(x.index))) {
    const kept = r.hunks.filter((x) => r.kept.get(x.index)).map((x) => x.index);
    reviews.delete(uri!);
    redraw(uri);
    if (kept.length === 0) {
      await host.execute("keel.step.reject", { step: r.step });
    } else {
      const res = (await host.execute("keel.step.accept", { step: r.step, hunks: kept })) as { applied?: boolean; reason?: string } | undefined;
      if (res && res.applied === false) void vscode.window.showWarningMessage(`Keel: the edit was not applied${res.reason ? `: ${res.reason}` : ""}.`);
    }
    return;
  }
  redraw(uri);
  const next = r.hunks.find((x) => !r.kept.has(x.index) && x.line > h.line) ?? r.hunks.find((x) => !r.kept.has(x.index));
  if (next && editor === vscode.window.activeTextEditor) reveal(editor, next);
}

/// Lenses over each hunk: "Keel: Keep hunk i/n" and "Keel: Drop hunk" (or what was decided).
export class HunkLenses implements vscode.CodeLensProvider {
  onDidChangeCodeLenses = lensChanged.event;
  provideCodeLenses(doc: vscode.TextDocument): vscode.CodeLens[] {
    const uri = doc.uri.toString();
    const r = reviews.get(uri);
    if (!r) return [];
    const n = r.hunks.length;
    const out: vscode.CodeLens[] = [];
    for (const h of r.hunks) {
      const range = new vscode.Range(anchor(doc, h), 0, anchor(doc, h), 0);
      const arg = { uri, step: r.step, index: h.index };
      const choice = r.kept.get(h.index);
      const state = choice === undefined ? "" : choice ? " (kept)" : " (dropped)";
      out.push(new vscode.CodeLens(range, { title: `Keel: Keep hunk ${h.index + 1}/${n}${state}`, command: "keel.hunk.keep", arguments: [arg] }));
      out.push(new vscode.CodeLens(range, { title: "Keel: Drop hunk", command: "keel.hunk.drop", arguments: [arg] }));
    }
    return out;
  }
}
