--- Keel for Neovim: the agent inside the editor, every decision recorded.
---
--- require("keel").setup({
---   cmd = { "keel-lsp" },                       -- or server_path = "/path/to/keel-lsp"
---   model = { endpoint = "http://127.0.0.1:8741/v1", name = "keel", api_key_env = "OPENAI_API_KEY" },
---   store = "~/.local/share/keel/keel.db",
--- })
---
--- Registers the `keel` server with `vim.lsp.config` / `vim.lsp.enable`, adds the :Keel* commands,
--- shows the pending step's code lenses (and keeps them fresh), and turns the server's `keel/status`
--- notifications into a status line item (`require("keel").statusline()`) and error messages.
local M = {}

local NAME = "keel"

--- The defaults; `setup(opts)` merges `opts` over them.
M.defaults = {
  --- The server command. `server_path` (a string) is a shorthand for `cmd = { server_path }`.
  cmd = nil,
  server_path = nil,
  filetypes = {
    "rust", "python", "typescript", "typescriptreact", "javascript", "javascriptreact",
    "go", "c", "cpp", "lua", "java", "sh", "toml", "yaml", "json", "markdown",
  },
  root_markers = { ".git", "Cargo.toml", "pyproject.toml", "package.json", "go.mod", ".hg" },
  --- Model endpoint (OpenAI-compatible), model name and the variable holding the API key.
  model = nil,
  --- SQLite trajectory store (default on the server side: $KEEL_STORE, else $XDG_DATA_HOME/keel/keel.db).
  store = nil,
  --- "normal" (the server's default) or "full": how long a commit to the store waits for the disk.
  store_sync = nil,
  --- { max_steps, max_auto_steps, request_timeout_secs, watch_secs, context_tokens }
  limits = nil,
  --- The task's verification command, recorded on episodes.
  verify = nil,
  --- Extra environment for the server process.
  cmd_env = nil,
  --- Refresh code lenses on LspAttach, BufEnter, InsertLeave and when the server asks.
  codelens = true,
  --- Show `keel/status` changes with vim.notify (errors are always shown).
  notify_status = false,
  --- Show a pending edit in place (removed lines highlighted, added lines as virtual lines).
  preview = true,
  --- Buffer-local normal-mode keys of the hunk review (`false` for none, or for one of them).
  keymaps = {
    next_hunk = "]k",
    prev_hunk = "[k",
    accept_hunk = "<leader>ka",
    reject_hunk = "<leader>kr",
    accept_all = "<leader>kA",
    reject_all = "<leader>kR",
    another = "<leader>kn",
  },
}

M.config = vim.deepcopy(M.defaults)

--- Last `keel/status` per client id.
M.status = {}

--- Per client id, why steps do not reach the store while they do not (`recording_failed`).
M.not_recording = {}

local function notify(msg, level)
  vim.notify("keel: " .. msg, level or vim.log.levels.INFO, { title = "keel" })
end
M._notify = notify

--- The initialization options of the protocol, from the config.
function M.init_options(cfg)
  cfg = cfg or M.config
  local o = {}
  if cfg.model then
    o.model = {
      endpoint = cfg.model.endpoint,
      name = cfg.model.name,
      api_key_env = cfg.model.api_key_env,
    }
  end
  if cfg.store then
    o.store = vim.fn.expand(cfg.store)
  end
  if cfg.store_sync then
    o.store_sync = cfg.store_sync
  end
  if cfg.limits then
    o.limits = cfg.limits
  end
  if cfg.verify then
    o.verify = cfg.verify
  end
  return o
end

local function server_cmd(cfg)
  if cfg.cmd then
    return cfg.cmd
  end
  if cfg.server_path then
    return { vim.fn.expand(cfg.server_path) }
  end
  return { "keel-lsp" }
end

--- Is the server binary there? Returns (ok, path or message).
function M.find_binary(cfg)
  cfg = cfg or M.config
  local cmd = server_cmd(cfg)
  if type(cmd) == "function" then
    return true, "(a function)"
  end
  local exe = cmd[1]
  if exe and vim.fn.executable(exe) == 1 then
    return true, vim.fn.exepath(exe)
  end
  return false,
    string.format(
      "the server binary `%s` was not found (not on PATH and not executable). Build it with "
        .. "`cargo build -p keel-server` and pass require('keel').setup({ server_path = '/path/to/keel-lsp' }), "
        .. "or put keel-lsp on PATH.",
      tostring(exe)
    )
end

--- The running keel client for a buffer (or any keel client).
function M.client(bufnr)
  local clients = vim.lsp.get_clients({ name = NAME, bufnr = bufnr or 0 })
  if #clients == 0 then
    clients = vim.lsp.get_clients({ name = NAME })
  end
  return clients[1]
end

local function need_client(bufnr)
  local c = M.client(bufnr)
  if not c then
    local ok, why = M.find_binary()
    if not ok then
      notify(why, vim.log.levels.ERROR)
    else
      notify("keel-lsp is not running for this buffer (is its filetype one of `filetypes`? see :checkhealth keel, :LspInfo)",
        vim.log.levels.WARN)
    end
  end
  return c
end

--- Sends `workspace/executeCommand` (arguments: a single object), calls `cb(err, result)`.
function M.execute(command, args, cb, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local c = need_client(bufnr)
  if not c then
    return false
  end
  local ok = c:request("workspace/executeCommand", { command = command, arguments = { args or vim.empty_dict() } },
    function(err, result)
      if err then
        notify(command .. " failed: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      end
      if cb then
        cb(err, result)
      end
      if M.config.codelens then
        pcall(vim.lsp.codelens.refresh, { bufnr = bufnr })
      end
    end, bufnr)
  if not ok then
    notify("keel-lsp is not running (it exited?); restart it with :KeelRestart", vim.log.levels.ERROR)
  end
  return ok
end

--- Asks the server for the pending steps (`keel/pending`), calls `cb(err, steps)`.
function M.pending(bufnr, cb, all)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local c = need_client(bufnr)
  if not c then
    return cb("no client", {})
  end
  local params = vim.empty_dict()
  if not all and vim.api.nvim_buf_get_name(bufnr) ~= "" then
    params = { uri = vim.uri_from_bufnr(bufnr) }
  end
  local ok = c:request("keel/pending", params, function(err, result)
    if err then
      notify("keel/pending failed: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return cb(err, {})
    end
    cb(nil, result or {})
  end, bufnr)
  if not ok then
    notify("keel-lsp is not running (it exited?); restart it with :KeelRestart", vim.log.levels.ERROR)
    cb("not running", {})
  end
end

--- The pending step under the cursor, else the first pending step of the buffer, else of any buffer.
--- Calls `cb(step)` (`nil` when there is none).
function M.current_step(cb)
  local bufnr = vim.api.nvim_get_current_buf()
  local line = vim.api.nvim_win_get_cursor(0)[1] - 1
  M.pending(bufnr, function(err, steps)
    if err then
      return cb(nil)
    end
    for _, s in ipairs(steps) do
      local r = s.range
      if type(r) == "table" and r.start.line <= line and r["end"].line >= line then
        return cb(s)
      end
    end
    if #steps > 0 then
      return cb(steps[1])
    end
    M.pending(bufnr, function(_, any)
      cb(any[1])
    end, true)
  end)
end

local function with_step(action)
  M.current_step(function(step)
    if not step then
      notify("no pending step", vim.log.levels.WARN)
      return
    end
    action(step)
  end)
end

function M.accept()
  with_step(function(step)
    M.execute("keel.step.accept", { step = step.step }, function(err, result)
      if not err and type(result) == "table" and result.applied == false then
        notify("the step was not applied" .. (step.tool == "run" and " (no sandbox configured: `run` steps are declined)" or ""),
          vim.log.levels.WARN)
      end
    end)
  end)
end

--- Rejects the pending step; asks for the reason when `reason` is nil (an empty answer: no reason).
function M.reject(reason)
  with_step(function(step)
    local function send(r)
      local args = { step = step.step }
      if r and r ~= "" then
        args.reason = r
      end
      M.execute("keel.step.reject", args)
    end
    if reason ~= nil then
      send(reason)
    else
      vim.ui.input({ prompt = "Keel: why reject? (optional) " }, function(input)
        if input == nil then
          return -- cancelled
        end
        send(input)
      end)
    end
  end)
end

function M.another()
  with_step(function(step)
    M.execute("keel.step.retry", { step = step.step })
  end)
end

function M.cancel()
  local c = M.client()
  local st = c and M.status[c.id]
  local args = vim.empty_dict()
  if st and st.episode and st.episode ~= vim.NIL and st.state ~= "finished" and st.state ~= "cancelled" then
    args = { episode = st.episode }
  end
  M.execute("keel.episode.cancel", args)
end

--- A split diff of the pending edit (original vs proposed) in a new tab.
function M.diff()
  with_step(function(step)
    if step.tool ~= "edit" or type(step.original) ~= "string" or type(step.proposed) ~= "string" then
      notify("the pending step is not an edit: " .. (step.title or step.command or step.tool), vim.log.levels.INFO)
      return
    end
    local name = step.uri and step.uri ~= vim.NIL and vim.fn.fnamemodify(vim.uri_to_fname(step.uri), ":t") or "file"
    local ft = vim.bo.filetype
    local function scratch(label, text)
      local b = vim.api.nvim_create_buf(false, true)
      local lines = vim.split(text, "\n", { plain = true })
      if lines[#lines] == "" then
        table.remove(lines) -- the file's final newline
      end
      vim.api.nvim_buf_set_lines(b, 0, -1, false, lines)
      vim.bo[b].bufhidden = "wipe"
      vim.bo[b].modifiable = false
      vim.bo[b].filetype = ft
      pcall(vim.api.nvim_buf_set_name, b, string.format("keel://%s/%s (%s)", step.step, name, label))
      return b
    end
    local orig = scratch("original", step.original)
    local prop = scratch("proposed", step.proposed)
    vim.cmd("tabnew")
    local empty = vim.api.nvim_get_current_buf()
    vim.api.nvim_win_set_buf(0, orig)
    vim.cmd("diffthis")
    vim.cmd("vsplit")
    vim.api.nvim_win_set_buf(0, prop)
    vim.cmd("diffthis")
    if vim.api.nvim_buf_is_valid(empty) and empty ~= orig and empty ~= prop then
      pcall(vim.api.nvim_buf_delete, empty, { force = true })
    end
    M.last_diff = { original = orig, proposed = prop, step = step.step }
  end)
end

--- A one-line summary of the last `keel/status` (for a statusline).
function M.statusline(bufnr)
  local c = M.client(bufnr)
  local st = c and M.status[c.id]
  local suffix = (c and M.not_recording[c.id]) and " (not recording)" or ""
  if not st then
    return c and ("keel: idle" .. suffix) or ""
  end
  local s = "keel: " .. (st.state or "?")
  if st.model_version and st.model_version ~= vim.NIL then
    s = s .. " [" .. st.model_version .. "]"
  elseif st.model and st.model ~= vim.NIL then
    s = s .. " [" .. st.model .. "]"
  end
  return s .. suffix
end

function M.show_status()
  local c = M.client()
  if not c then
    local ok, why = M.find_binary()
    notify(ok and "keel-lsp is not running for this buffer" or why, ok and vim.log.levels.WARN or vim.log.levels.ERROR)
    return
  end
  local st = M.status[c.id]
  if not st then
    notify("idle (no episode yet); server " .. tostring(c.name) .. " running", vim.log.levels.INFO)
    return
  end
  local function s(v)
    return (v == nil or v == vim.NIL) and "-" or tostring(v)
  end
  notify(string.format("%s — %s (episode %s, model %s, version %s)", s(st.state), s(st.message), s(st.episode), s(st.model),
    s(st.model_version)), st.state == "error" and vim.log.levels.ERROR or vim.log.levels.INFO)
end

--- Starts an episode with an instruction on the current line or the given line range.
function M.ask(instruction, line1, line2)
  local bufnr = vim.api.nvim_get_current_buf()
  local function go(text)
    if not text or text == "" then
      return
    end
    local l1 = (line1 or vim.api.nvim_win_get_cursor(0)[1]) - 1
    local l2 = (line2 or (l1 + 1)) - 1
    local last = vim.api.nvim_buf_get_lines(bufnr, l2, l2 + 1, false)[1] or ""
    M.execute("keel.episode.start", {
      uri = vim.uri_from_bufnr(bufnr),
      range = { start = { line = l1, character = 0 }, ["end"] = { line = l2, character = #last } },
      kind = "instruction",
      instruction = text,
    })
  end
  if instruction and instruction ~= "" then
    go(instruction)
  else
    vim.ui.input({ prompt = "Keel: what should it do? " }, go)
  end
end

--- Client-side handlers for commands that need the user first (lenses and code actions call them).
local client_commands = {
  ["keel.step.reject"] = function(command, ctx)
    local args = (command.arguments or {})[1] or {}
    vim.ui.input({ prompt = "Keel: why reject? (optional) " }, function(input)
      if input == nil then
        return
      end
      local a = vim.deepcopy(args)
      if input ~= "" then
        a.reason = input
      end
      M.execute("keel.step.reject", a, nil, ctx.bufnr)
    end)
  end,
  ["keel.episode.start"] = function(command, ctx)
    local args = vim.deepcopy((command.arguments or {})[1] or {})
    if args.kind == "instruction" and (args.instruction == nil or args.instruction == "") then
      vim.ui.input({ prompt = "Keel: what should it do? " }, function(input)
        if not input or input == "" then
          return
        end
        args.instruction = input
        M.execute("keel.episode.start", args, nil, ctx.bufnr)
      end)
    else
      M.execute("keel.episode.start", args, nil, ctx.bufnr)
    end
  end,
}

local function refresh_lenses(bufnr)
  if not M.config.codelens then
    return
  end
  pcall(vim.lsp.codelens.refresh, bufnr and { bufnr = bufnr } or nil)
end

local function refresh_review(bufnr)
  if not M.config.preview then
    return
  end
  local review = require("keel.review")
  if bufnr then
    review.refresh(bufnr)
  else
    review.refresh_all()
  end
end

local function on_status(_, params, ctx)
  if type(params) ~= "table" then
    return
  end
  if params.state == "recording_failed" or params.state == "recording" then
    -- Not an episode's state: it marks the status line until the store can be written again (the
    -- server's own message already told the user).
    M.not_recording[ctx.client_id] = params.state == "recording_failed" and params.message or nil
    pcall(vim.cmd.redrawstatus)
    return
  end
  local prev = M.status[ctx.client_id]
  M.status[ctx.client_id] = params
  if params.state == "error" then
    notify((params.message and params.message ~= vim.NIL) and params.message or "error", vim.log.levels.ERROR)
  elseif M.config.notify_status and (not prev or prev.state ~= params.state) then
    notify(params.state .. ((params.message and params.message ~= vim.NIL and params.message ~= "") and (": " .. params.message) or ""))
  end
  if params.state == "pending" or params.state == "finished" or params.state == "cancelled" then
    refresh_lenses()
  end
  -- A new proposal replaces the preview; an answer or the episode's end clears it.
  refresh_review()
  vim.api.nvim_exec_autocmds("User", { pattern = "KeelStatus", modeline = false, data = params })
  pcall(vim.cmd.redrawstatus)
end

local function on_exit(code, signal, client_id)
  -- Called from the RPC loop: schedule the UI work.
  vim.schedule(function()
    M.status[client_id] = nil
    if code ~= 0 or (signal and signal ~= 0 and signal ~= 15) then
      notify(string.format("keel-lsp exited unexpectedly (code %s, signal %s). Its log is in :LspLog; "
        .. "restart it with :KeelRestart (or reopen the buffer).", tostring(code), tostring(signal)), vim.log.levels.ERROR)
    end
    pcall(vim.lsp.codelens.clear, client_id)
    local review = require("keel.review")
    for buf in pairs(review.reviews) do
      review.reviews[buf] = nil
      review.draw(buf)
    end
  end)
end

--- The `vim.lsp.config` table for the server.
function M.lsp_config(cfg)
  cfg = cfg or M.config
  local settings = { keel = M.init_options(cfg) }
  return {
    cmd = server_cmd(cfg),
    cmd_env = cfg.cmd_env,
    filetypes = cfg.filetypes,
    root_markers = cfg.root_markers,
    init_options = M.init_options(cfg),
    settings = settings,
    commands = client_commands,
    handlers = {
      ["keel/status"] = on_status,
      ["workspace/codeLens/refresh"] = function(_, _, ctx)
        local c = vim.lsp.get_client_by_id(ctx.client_id)
        if c then
          for buf in pairs(c.attached_buffers or {}) do
            refresh_lenses(buf)
            refresh_review(buf)
          end
        end
        return vim.NIL
      end,
    },
    on_exit = on_exit,
  }
end

local function create_commands()
  local cmd = vim.api.nvim_create_user_command
  cmd("KeelAccept", M.accept, { desc = "Keel: accept the pending step" })
  cmd("KeelReject", function(a)
    M.reject(a.args ~= "" and a.args or nil)
  end, { nargs = "?", desc = "Keel: reject the pending step [reason]" })
  cmd("KeelAnother", M.another, { desc = "Keel: reject and ask for another action at the same state" })
  cmd("KeelCancel", M.cancel, { desc = "Keel: cancel the episode" })
  cmd("KeelDiff", M.diff, { desc = "Keel: diff of the pending edit" })
  cmd("KeelStatus", M.show_status, { desc = "Keel: the episode's state and the model version" })
  cmd("KeelAsk", function(a)
    M.ask(a.args, a.range > 0 and a.line1 or nil, a.range > 0 and a.line2 or nil)
  end, { nargs = "?", range = true, desc = "Keel: start an episode with an instruction" })
  local review = function(f)
    return function()
      f(require("keel.review"))
    end
  end
  cmd("KeelHunkNext", review(function(r) r.jump(1) end), { desc = "Keel: next hunk of the pending edit" })
  cmd("KeelHunkPrev", review(function(r) r.jump(-1) end), { desc = "Keel: previous hunk of the pending edit" })
  cmd("KeelHunkAccept", review(function(r) r.decide(true) end), { desc = "Keel: keep the hunk at the cursor" })
  cmd("KeelHunkReject", review(function(r) r.decide(false) end), { desc = "Keel: drop the hunk at the cursor" })
  cmd("KeelRestart", function()
    for _, c in ipairs(vim.lsp.get_clients({ name = NAME })) do
      c:stop(true)
    end
    vim.defer_fn(function()
      vim.lsp.enable(NAME, false)
      vim.lsp.enable(NAME, true)
    end, 100)
  end, { desc = "Keel: restart keel-lsp" })
end

local function create_autocmds()
  local group = vim.api.nvim_create_augroup("keel", { clear = true })
  vim.api.nvim_create_autocmd("LspAttach", {
    group = group,
    callback = function(ev)
      local c = vim.lsp.get_client_by_id(ev.data.client_id)
      if c and c.name == NAME then
        refresh_lenses(ev.buf)
        require("keel.review").map(ev.buf, M.config.keymaps)
        refresh_review(ev.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd("ColorScheme", {
    group = group,
    callback = function()
      require("keel.review").define_highlights()
    end,
  })
  -- Text changed in normal mode (`dd`, `p`, an undo) moves the hunks' lines: ask again.
  vim.api.nvim_create_autocmd("TextChanged", {
    group = group,
    callback = function(ev)
      if require("keel.review").reviews[ev.buf] then
        refresh_review(ev.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd({ "BufEnter", "InsertLeave" }, {
    group = group,
    callback = function(ev)
      if #vim.lsp.get_clients({ name = NAME, bufnr = ev.buf }) > 0 then
        refresh_lenses(ev.buf)
        refresh_review(ev.buf)
      end
    end,
  })
end

--- Sets Keel up. Returns true when the server was registered and enabled.
function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  if opts and opts.keymaps == false then
    M.config.keymaps = false
  end
  require("keel.review").define_highlights()
  create_commands()
  create_autocmds()
  local ok, why = M.find_binary(M.config)
  if not ok then
    notify(why, vim.log.levels.ERROR)
    return false
  end
  vim.lsp.config(NAME, M.lsp_config(M.config))
  vim.lsp.enable(NAME)
  return true
end

--- Sends new settings to the running server (`workspace/didChangeConfiguration`).
function M.update(opts)
  M.config = vim.tbl_deep_extend("force", M.config, opts or {})
  local settings = { keel = M.init_options(M.config) }
  for _, c in ipairs(vim.lsp.get_clients({ name = NAME })) do
    c.settings = settings
    c:notify("workspace/didChangeConfiguration", { settings = settings })
  end
  vim.lsp.config(NAME, M.lsp_config(M.config))
end

return M
