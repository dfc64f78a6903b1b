// Drives `keel-lsp --acp` with the official ACP TypeScript SDK (@agentclientprotocol/sdk), as an
// editor would: initialize (with the fs capabilities), session/new, one session/prompt; it answers
// the agent's permission requests from a script, serves fs/read_text_file and fs/write_text_file
// from the disk, and records everything it saw. Run by server/tests/lsp/acp.rs.
//
// usage: node drive.mjs '<json>' with
//   bin      the keel-lsp binary
//   cwd      the session's working directory (absolute)
//   prompt   the user's text
//   answers  one per permission request, in order: "allow" | "another" | {"reject": "reason"} | "cancel"
//   cancelOnThought  send session/cancel at the first agent_thought_chunk (the model is being asked)
//   fs       advertise fs.readTextFile / fs.writeTextFile (default true)
//   args     more arguments for keel-lsp after --acp (e.g. ["--config", FILE])
// prints one JSON line: {stopReason | error, permissions, updates, reads, writes, sdkErrors, agentInfo}.

import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const opts = JSON.parse(process.argv[2]);
const fsCaps = opts.fs ?? true;
const answers = [...(opts.answers ?? [])];
const seen = { permissions: [], updates: [], reads: [], writes: [], sdkErrors: [] };
// The SDK validates what the agent sends against the schema; a notification that fails is logged
// with console.error and dropped. Keep those: the test fails on any.
const consoleError = console.error;
console.error = (...args) => {
  seen.sdkErrors.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
  consoleError(...args);
};
let sessionId = null;
let cancelled = false;

const child = spawn(opts.bin, ["--acp", ...(opts.args ?? [])], { stdio: ["pipe", "pipe", "inherit"], env: process.env });
const exited = new Promise((resolve) => child.on("exit", (c) => resolve(c)));
const stream = acp.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));

const app = acp
  .client({ name: "keel-acp-e2e" })
  .onRequest(acp.methods.client.session.requestPermission, async ({ params, agent }) => {
    seen.permissions.push(params);
    const next = answers.shift() ?? "allow";
    if (next === "cancel" || cancelled) {
      cancelled = true;
      await agent.notify(acp.methods.agent.session.cancel, { sessionId: params.sessionId });
      return { outcome: { outcome: "cancelled" } };
    }
    if (typeof next === "object" && "reject" in next) {
      return { outcome: { outcome: "selected", optionId: "reject" }, _meta: { keel: { reason: next.reject } } };
    }
    const option = params.options.find((o) => o.optionId === next);
    if (!option) throw new Error(`no option ${next} in ${JSON.stringify(params.options)}`);
    return { outcome: { outcome: "selected", optionId: option.optionId } };
  })
  .onRequest(acp.methods.client.fs.readTextFile, async ({ params }) => {
    seen.reads.push(params.path);
    return { content: readFileSync(params.path, "utf8") };
  })
  .onRequest(acp.methods.client.fs.writeTextFile, async ({ params }) => {
    seen.writes.push({ path: params.path, content: params.content });
    writeFileSync(params.path, params.content);
    return {};
  })
  .onNotification(acp.methods.client.session.update, async ({ params, agent }) => {
    seen.updates.push(params.update);
    if (opts.cancelOnThought && !cancelled && params.update.sessionUpdate === "agent_thought_chunk") {
      cancelled = true;
      await agent.notify(acp.methods.agent.session.cancel, { sessionId: params.sessionId });
    }
  });

const result = { ...seen };
try {
  await app.connectWith(stream, async (ctx) => {
    const init = await ctx.request(acp.methods.agent.initialize, {
      protocolVersion: acp.PROTOCOL_VERSION,
      clientCapabilities: { fs: { readTextFile: fsCaps, writeTextFile: fsCaps }, terminal: false },
      clientInfo: { name: "keel-acp-e2e", version: "1" },
    });
    result.protocolVersion = init.protocolVersion;
    result.agentInfo = init.agentInfo;
    const session = await ctx.request(acp.methods.agent.session.new, { cwd: opts.cwd, mcpServers: [] });
    sessionId = session.sessionId;
    try {
      const r = await ctx.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: opts.prompt }] });
      result.stopReason = r.stopReason;
    } catch (e) {
      result.error = { code: e.code, message: e.message, data: e.data };
    }
  });
} catch (e) {
  result.connectionError = String(e?.stack ?? e);
}
// Closing stdin ends keel-lsp, which makes every record durable before it exits.
if (!child.stdin.writableEnded) child.stdin.end();
result.exitCode = await exited;
process.stdout.write(JSON.stringify(result) + "\n");
