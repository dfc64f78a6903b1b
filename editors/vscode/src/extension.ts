// Keel for VS Code: starts keel-lsp over stdio and adds the palette commands, the diff view of a pending
// edit and a status bar item. Everything else (code actions, lenses, hint diagnostics, applying
// accepted edits) is plain LSP that vscode-languageclient handles.
import * as fs from "fs";
import * as path from "path";
import * as vscode from "vscode";
import {
  CloseAction,
  CloseHandlerResult,
  DidChangeConfigurationNotification,
  ErrorAction,
  ErrorHandlerResult,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  Message,
  RevealOutputChannelOn,
  ServerOptions,
  State,
} from "vscode-languageclient/node";
import * as review from "./review";

/// `keel/pending` items (protocol.md).
interface PendingStep {
  step: string;
  episode: string;
  tool: "edit" | "run";
  uri: string | null;
  range: { start: { line: number; character: number }; end: { line: number; character: number } } | null;
  title: string;
  original: string | null;
  proposed: string | null;
  command: string | null;
  model_version: string | null;
  /// The edit's hunks (empty for `run`): review them one by one with `keel.step.accept {hunks}`.
  hunks?: review.Hunk[];
}

/// `keel/status` params.
interface Status {
  episode: string | null;
  state: "idle" | "thinking" | "pending" | "finished" | "cancelled" | "error" | "recording_failed" | "recording";
  message: string;
  model: string | null;
  model_version: string | null;
  step: string | null;
  /// Only on `recording_failed` / `recording`.
  recording?: "failing" | "ok";
}

/// Why steps do not reach the store, while they do not (the server's `recording_failed` status).
let recordingFailure: string | undefined;

let client: LanguageClient | undefined;
let statusItem: vscode.StatusBarItem;
let output: vscode.OutputChannel;
let lastStatus: Status | undefined;
let stopping = false;
/// Texts for the `keel-original:` / `keel-proposed:` virtual documents, by step id.
const diffTexts = new Map<string, { original: string; proposed: string }>();

/// The protocol's initialization options (also sent as `workspace/didChangeConfiguration`).
export function initOptions(): Record<string, unknown> {
  const c = vscode.workspace.getConfiguration("keel");
  const o: Record<string, unknown> = {};
  const model: Record<string, string> = {};
  const endpoint = c.get<string>("model.endpoint", "");
  const name = c.get<string>("model.name", "");
  const keyEnv = c.get<string>("model.apiKeyEnv", "");
  if (endpoint) model.endpoint = endpoint;
  if (name) model.name = name;
  if (keyEnv) model.api_key_env = keyEnv;
  if (Object.keys(model).length > 0) o.model = model;
  const store = c.get<string>("store", "");
  if (store) o.store = expandHome(store);
  const storeSync = c.get<string>("storeSync", "normal");
  if (storeSync && storeSync !== "normal") o.store_sync = storeSync;
  return o;
}

function expandHome(p: string): string {
  return p.startsWith("~/") ? path.join(process.env.HOME ?? "", p.slice(2)) : p;
}

/// `keel.serverPath`, else `keel-lsp` on PATH; `undefined` when neither is there.
export function findServer(): string | undefined {
  const configured = vscode.workspace.getConfiguration("keel").get<string>("serverPath", "");
  if (configured) {
    const p = expandHome(configured);
    return isExecutable(p) ? p : undefined;
  }
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, process.platform === "win32" ? "keel-lsp.exe" : "keel-lsp");
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function setStatus(text: string, tooltip: string, command?: string, error = false) {
  statusItem.text = text;
  statusItem.tooltip = tooltip;
  statusItem.command = command;
  statusItem.backgroundColor = error ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  statusItem.show();
}

function showStatus(s: Status) {
  if (s.state === "recording_failed" || s.state === "recording") {
    // Not an episode's state: it marks whatever the episode shows until recording works again.
    recordingFailure = s.state === "recording_failed" ? s.message : undefined;
    if (lastStatus) showStatus(lastStatus);
    else if (recordingFailure) setStatus("$(error) Keel: not recording", recordingFailure, "keel.showOutput", true);
    else setStatus("$(circle-outline) Keel: idle", s.message, "keel.showOutput");
    return;
  }
  lastStatus = s;
  const icon: Record<string, string> = {
    idle: "$(circle-outline)",
    thinking: "$(sync~spin)",
    pending: "$(question)",
    finished: "$(check)",
    cancelled: "$(circle-slash)",
    error: "$(error)",
  };
  const version = s.model_version ?? s.model;
  const text = `${icon[s.state] ?? ""} Keel: ${s.state}${version ? ` · ${version}` : ""}`;
  const tip = `${s.message || s.state}${s.episode ? `\nepisode ${s.episode}` : ""}${s.model ? `\nmodel ${s.model}` : ""}${
    s.model_version ? ` (${s.model_version})` : ""
  }`;
  if (recordingFailure) {
    setStatus(`${text} · not recording`, `${tip}\n${recordingFailure}`, s.state === "pending" ? "keel.showDiff" : "keel.showOutput", true);
    return;
  }
  setStatus(text, tip, s.state === "pending" ? "keel.showDiff" : "keel.showOutput", s.state === "error");
}

async function missingServer() {
  const configured = vscode.workspace.getConfiguration("keel").get<string>("serverPath", "");
  const msg = configured
    ? `Keel: the server binary "${configured}" (keel.serverPath) does not exist or is not executable. Build it with \`cargo build -p keel-server\` and point keel.serverPath at target/debug/keel-lsp.`
    : "Keel: keel-lsp was not found on PATH. Build it with `cargo build -p keel-server` and set keel.serverPath to its path (target/debug/keel-lsp), or put it on PATH.";
  setStatus("$(error) Keel: no server", msg, "keel.openSettings", true);
  const pick = await vscode.window.showErrorMessage(msg, "Open Settings");
  if (pick === "Open Settings") {
    await vscode.commands.executeCommand("workbench.action.openSettings", "keel.serverPath");
  }
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  const server = findServer();
  if (!server) {
    await missingServer();
    return;
  }
  const serverOptions: ServerOptions = { command: server, args: [], options: { env: { ...process.env } } };
  let crashes = 0;
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }],
    initializationOptions: initOptions(),
    outputChannel: output,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    errorHandler: {
      error: (_e: Error, _m: Message | undefined, count: number | undefined): ErrorHandlerResult => ({
        action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
      }),
      closed: (): CloseHandlerResult => {
        review.clearAll();
        if (stopping) return { action: CloseAction.DoNotRestart, handled: true };
        crashes++;
        const msg = `Keel: keel-lsp stopped unexpectedly${crashes > 1 ? ` (${crashes} times)` : ""}. Its log is in the Keel output.`;
        setStatus("$(error) Keel: server stopped", msg, "keel.restart", true);
        void vscode.window.showErrorMessage(msg, "Restart", "Show Output").then((pick) => {
          if (pick === "Restart") void vscode.commands.executeCommand("keel.restart");
          if (pick === "Show Output") output.show(true);
        });
        return { action: CloseAction.DoNotRestart, handled: true };
      },
    },
    middleware: {
      // Lenses and code actions call the server's commands directly; the two that need the user first
      // (a reason for Reject, an instruction for Ask) go through an input box here.
      executeCommand: async (command, args, next) => {
        const a = (args?.[0] ?? {}) as Record<string, unknown>;
        if (command === "keel.step.reject" && a.reason === undefined) {
          const reason = await vscode.window.showInputBox({ title: "Keel: reject", prompt: "Why? (optional: it goes back to the model and into the store)" });
          if (reason === undefined) return null;
          return next(command, [reason ? { ...a, reason } : a]);
        }
        if (command === "keel.episode.start" && a.kind === "instruction" && !a.instruction) {
          const instruction = await vscode.window.showInputBox({ title: "Keel: ask", prompt: "What should it do?" });
          if (!instruction) return null;
          return next(command, [{ ...a, instruction }]);
        }
        return next(command, args);
      },
    },
  };
  const c = new LanguageClient("keel", "Keel", serverOptions, clientOptions);
  client = c;
  c.onDidChangeState((e) => {
    if (e.newState === State.Running) {
      crashes = crashes > 0 ? crashes : 0;
      if (!lastStatus || lastStatus.state === "error") setStatus("$(circle-outline) Keel: idle", `keel-lsp running (${server})`, "keel.showOutput");
    }
  });
  setStatus("$(sync~spin) Keel: starting", `starting ${server}`, "keel.showOutput");
  try {
    await c.start();
  } catch (e) {
    const msg = `Keel: keel-lsp (${server}) failed to start: ${e instanceof Error ? e.message : String(e)}`;
    setStatus("$(error) Keel: not running", msg, "keel.restart", true);
    void vscode.window.showErrorMessage(msg, "Show Output").then((p) => p && output.show(true));
    return;
  }
  context.subscriptions.push(
    c.onNotification("keel/status", (s: Status) => {
      showStatus(s);
      // A new proposal replaces the preview; an answer or the episode's end clears it.
      void review.refresh(reviewHost);
    }),
  );
  setStatus("$(circle-outline) Keel: idle", `keel-lsp running (${server})`, "keel.showOutput");
}

function needClient(): LanguageClient | undefined {
  if (client && client.state === State.Running) return client;
  void vscode.window.showErrorMessage("Keel: keel-lsp is not running. Run “Keel: Restart keel-lsp” (see the Keel output for why it stopped).");
  return undefined;
}

async function execute(command: string, args: Record<string, unknown>): Promise<unknown> {
  const c = needClient();
  if (!c) return undefined;
  try {
    return await c.sendRequest(ExecuteCommandRequest.type, { command, arguments: [args] });
  } catch (e) {
    void vscode.window.showErrorMessage(`Keel: ${command} failed: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}

/// What the hunk review needs of the client; quiet when the server is not running.
const reviewHost: review.ReviewHost = {
  pending: async (uri) => {
    if (!client || client.state !== State.Running) return undefined;
    try {
      return await client.sendRequest<PendingStep[]>("keel/pending", { uri });
    } catch {
      return undefined;
    }
  },
  execute: (command, args) => execute(command, args),
};

let refreshTimer: NodeJS.Timeout | undefined;
/// Refreshes the preview a little after typing stops (the hunks' lines move with the text).
function refreshSoon() {
  if (refreshTimer) clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => void review.refresh(reviewHost), 300);
}

async function pending(uri?: string): Promise<PendingStep[]> {
  const c = needClient();
  if (!c) return [];
  try {
    return (await c.sendRequest<PendingStep[]>("keel/pending", uri ? { uri } : {})) ?? [];
  } catch (e) {
    void vscode.window.showErrorMessage(`Keel: keel/pending failed: ${e instanceof Error ? e.message : String(e)}`);
    return [];
  }
}

/// The pending step under the cursor, else the active file's first, else any.
async function currentStep(): Promise<PendingStep | undefined> {
  const ed = vscode.window.activeTextEditor;
  if (ed) {
    const steps = await pending(ed.document.uri.toString());
    const line = ed.selection.active.line;
    const here = steps.find((s) => s.range && s.range.start.line <= line && s.range.end.line >= line);
    if (here) return here;
    if (steps.length > 0) return steps[0];
  }
  const all = await pending();
  if (all.length === 0) void vscode.window.showInformationMessage("Keel: no pending step.");
  return all[0];
}

class DiffProvider implements vscode.TextDocumentContentProvider {
  constructor(private side: "original" | "proposed") {}
  provideTextDocumentContent(uri: vscode.Uri): string {
    const step = uri.path.split("/")[1] ?? "";
    const t = diffTexts.get(step);
    return t ? t[this.side] : "";
  }
}

async function showDiff() {
  const s = await currentStep();
  if (!s) return;
  if (s.tool !== "edit" || s.original === null || s.proposed === null) {
    void vscode.window.showInformationMessage(`Keel: the pending step is not an edit: ${s.title || s.command || s.tool}`);
    return;
  }
  diffTexts.set(s.step, { original: s.original, proposed: s.proposed });
  const file = s.uri ? path.basename(vscode.Uri.parse(s.uri).path) : "file";
  const left = vscode.Uri.from({ scheme: "keel-original", path: `/${s.step}/${file}` });
  const right = vscode.Uri.from({ scheme: "keel-proposed", path: `/${s.step}/${file}` });
  await vscode.commands.executeCommand("vscode.diff", left, right, `Keel: ${file} (original ↔ proposed)`);
}

async function ask() {
  const ed = vscode.window.activeTextEditor;
  if (!ed) {
    void vscode.window.showInformationMessage("Keel: open a file first.");
    return;
  }
  const instruction = await vscode.window.showInputBox({ title: "Keel: ask", prompt: "What should it do?" });
  if (!instruction) return;
  const sel = ed.selection;
  await execute("keel.episode.start", {
    uri: ed.document.uri.toString(),
    range: { start: { line: sel.start.line, character: sel.start.character }, end: { line: sel.end.line, character: sel.end.character } },
    kind: "instruction",
    instruction,
  });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("Keel");
  statusItem = vscode.window.createStatusBarItem("keel.status", vscode.StatusBarAlignment.Left, 100);
  statusItem.name = "Keel";
  context.subscriptions.push(output, statusItem);
  context.subscriptions.push(
    vscode.workspace.registerTextDocumentContentProvider("keel-original", new DiffProvider("original")),
    vscode.workspace.registerTextDocumentContentProvider("keel-proposed", new DiffProvider("proposed")),
    vscode.commands.registerCommand("keel.accept", async () => {
      const s = await currentStep();
      if (!s) return;
      const r = (await execute("keel.step.accept", { step: s.step })) as { applied?: boolean } | undefined;
      if (r && r.applied === false) {
        void vscode.window.showWarningMessage(
          s.tool === "run" ? "Keel: not run (no sandbox is configured; run steps are declined)." : "Keel: the edit was not applied.",
        );
      }
    }),
    vscode.commands.registerCommand("keel.reject", async () => {
      const s = await currentStep();
      if (!s) return;
      const reason = await vscode.window.showInputBox({ title: "Keel: reject", prompt: "Why? (optional: it goes back to the model and into the store)" });
      if (reason === undefined) return;
      await execute("keel.step.reject", reason ? { step: s.step, reason } : { step: s.step });
    }),
    vscode.commands.registerCommand("keel.another", async () => {
      const s = await currentStep();
      if (s) await execute("keel.step.retry", { step: s.step });
    }),
    vscode.commands.registerCommand("keel.cancel", async () => {
      const live = lastStatus && lastStatus.episode && !["finished", "cancelled"].includes(lastStatus.state);
      await execute("keel.episode.cancel", live ? { episode: lastStatus!.episode } : {});
    }),
    vscode.commands.registerCommand("keel.showDiff", showDiff),
    vscode.languages.registerCodeLensProvider({ scheme: "file" }, new review.HunkLenses()),
    vscode.commands.registerCommand("keel.hunk.keep", (arg?: { uri?: string; step?: string; index?: number }) => review.decide(reviewHost, true, arg)),
    vscode.commands.registerCommand("keel.hunk.drop", (arg?: { uri?: string; step?: string; index?: number }) => review.decide(reviewHost, false, arg)),
    vscode.commands.registerCommand("keel.hunk.next", () => review.jump(1)),
    vscode.commands.registerCommand("keel.hunk.previous", () => review.jump(-1)),
    vscode.window.onDidChangeVisibleTextEditors(() => void review.refresh(reviewHost)),
    vscode.window.onDidChangeActiveTextEditor(() => void review.refresh(reviewHost)),
    vscode.workspace.onDidChangeTextDocument((e) => {
      if (review.review(e.document.uri.toString())) refreshSoon();
    }),
    vscode.commands.registerCommand("keel.ask", ask),
    vscode.commands.registerCommand("keel.showOutput", () => output.show(true)),
    vscode.commands.registerCommand("keel.openSettings", () => vscode.commands.executeCommand("workbench.action.openSettings", "keel")),
    vscode.commands.registerCommand("keel.restart", async () => {
      if (client) {
        stopping = true;
        try {
          if (client.state === State.Running) await client.stop(2000);
        } catch {
          // already gone
        }
        stopping = false;
        client = undefined;
      }
      review.clearAll();
      lastStatus = undefined;
      await startClient(context);
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (!e.affectsConfiguration("keel")) return;
      if (e.affectsConfiguration("keel.serverPath")) {
        await vscode.commands.executeCommand("keel.restart");
        return;
      }
      if (client && client.state === State.Running) {
        await client.sendNotification(DidChangeConfigurationNotification.type, { settings: { keel: initOptions() } });
      }
    }),
  );
  await startClient(context);
}

export async function deactivate(): Promise<void> {
  stopping = true;
  if (client && client.state === State.Running) await client.stop();
}
