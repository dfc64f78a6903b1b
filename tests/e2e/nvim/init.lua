-- Test harness for the Neovim end-to-end suite (tests/e2e/nvim.rs). Run as
--   nvim --headless --clean -u tests/e2e/nvim/init.lua
-- with KEEL_E2E_PLUGIN (editors/nvim), KEEL_E2E_SCENARIO (a Lua file returning function(t)) and
-- KEEL_E2E_OUT (where the results go as JSON). A scenario records facts with t.record(key, value);
-- the Rust side asserts on them. Any error ends nvim with exit code 1 and the error in the results.
vim.opt.rtp:prepend(assert(vim.env.KEEL_E2E_PLUGIN, "KEEL_E2E_PLUGIN"))
vim.opt.swapfile = false
vim.opt.shortmess:append("F")

local out = assert(vim.env.KEEL_E2E_OUT, "KEEL_E2E_OUT")
local results = { notes = {}, facts = {} }

-- Every message the plugin (or Neovim's LSP client) shows the user.
local orig_notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(results.notes, { msg = tostring(msg), level = level or vim.log.levels.INFO })
end

local t = {}
t.results = results

function t.record(key, value)
  results.facts[key] = value
end

--- Waits (processing events: LSP messages, timers) until `cond()` is truthy; errors after `ms`.
function t.wait(what, cond, ms)
  local ok = vim.wait(ms or 20000, function()
    local good, v = pcall(cond)
    return good and v
  end, 20)
  if not ok then
    error("timed out waiting for " .. what, 2)
  end
end

--- Opens `name` (relative to the workspace) and waits until keel-lsp is attached to it and
--- initialized; returns the buffer and the client.
function t.open(name)
  vim.cmd.edit(assert(vim.env.KEEL_E2E_ROOT, "KEEL_E2E_ROOT") .. "/" .. name)
  local buf = vim.api.nvim_get_current_buf()
  t.wait("keel-lsp to attach", function()
    return #vim.lsp.get_clients({ name = "keel", bufnr = buf }) > 0
  end)
  local client = require("keel").client(buf)
  t.wait("initialize", function()
    return client.initialized
  end)
  return buf, client
end

function t.notes_matching(pat, level)
  local n = {}
  for _, x in ipairs(results.notes) do
    if x.msg:find(pat) and (level == nil or x.level == level) then
      table.insert(n, x.msg)
    end
  end
  return n
end

local function write()
  local f = assert(io.open(out, "w"))
  f:write(vim.json.encode(results))
  f:close()
end

local function run()
  local scenario = dofile(assert(vim.env.KEEL_E2E_SCENARIO, "KEEL_E2E_SCENARIO"))
  local ok, err = xpcall(scenario, debug.traceback, t)
  if not ok then
    results.error = tostring(err)
  end
  write()
  -- Stop the servers politely, then leave.
  for _, c in ipairs(vim.lsp.get_clients()) do
    c:stop()
  end
  vim.wait(3000, function()
    return #vim.lsp.get_clients() == 0
  end, 20)
  vim.cmd(ok and "qa!" or "cquit! 1")
end

vim.api.nvim_create_autocmd("VimEnter", {
  once = true,
  callback = function()
    -- Out of the autocommand, so that FileType and LspAttach fire for what the scenario opens.
    vim.schedule(run)
  end,
})
