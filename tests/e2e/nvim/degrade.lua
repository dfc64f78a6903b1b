-- Degrading well: a missing binary, an unreachable model, a server that crashes. Each case checks the
-- user got a clear message and that Neovim still answers (the harness's vim.wait loop keeps running).
return function(t)
  local keel = require("keel")
  local case = vim.env.KEEL_E2E_CASE
  local opts = {
    model = { endpoint = vim.env.KEEL_E2E_ENDPOINT, name = "scripted" },
    store = vim.env.KEEL_E2E_STORE,
    limits = { request_timeout_secs = 3, watch_secs = 1 },
  }
  local pidfile = vim.env.KEEL_E2E_ROOT .. "/../server.pid"
  if case == "crash" then
    -- Through a shell that records the server's pid, so the test can kill it like a crash would.
    opts.cmd = { "sh", "-c", 'echo $$ > "$0"; exec "$1"', pidfile, vim.env.KEEL_E2E_LSP }
  else
    opts.server_path = vim.env.KEEL_E2E_LSP
  end
  t.record("enabled", keel.setup(opts))

  vim.cmd.edit(vim.env.KEEL_E2E_ROOT .. "/calc.py")
  local buf = vim.api.nvim_get_current_buf()
  vim.api.nvim_win_set_cursor(0, { 2, 4 })

  local function accept_messages()
    local before = #t.results.notes
    vim.cmd("KeelAccept")
    vim.wait(500, function() return #t.results.notes > before end, 20)
    local m = {}
    for i = before + 1, #t.results.notes do
      table.insert(m, t.results.notes[i].msg)
    end
    return m
  end

  if case == "no_binary" then
    t.record("accept_messages", accept_messages())
    vim.cmd("checkhealth keel")
    t.record("health", table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n"))
  else
    t.wait("keel-lsp to attach", function()
      local c = keel.client(buf)
      return c and c.initialized
    end)
    local client = keel.client(buf)
    if case == "unreachable" then
      vim.cmd("KeelAsk make add add")
      t.wait("an error status", function()
        local st = keel.status[client.id]
        return st and st.state == "error"
      end)
      t.record("state", keel.status[client.id].state)
      t.wait("the error message", function()
        return #t.notes_matching("127.0.0.1", vim.log.levels.ERROR) > 0
      end)
      vim.cmd("checkhealth keel")
      t.record("health", table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n"))
    elseif case == "crash" then
      vim.cmd("KeelAsk make add add")
      t.wait("a pending step", function()
        local st = keel.status[client.id]
        return st and st.state == "pending"
      end)
      local pid = tonumber(vim.trim(io.open(pidfile):read("*a")))
      vim.uv.kill(pid, "sigkill")
      t.wait("the crash message", function()
        return #t.notes_matching("exited unexpectedly", vim.log.levels.ERROR) > 0
      end)
      t.wait("the client to go", function()
        return keel.client(buf) == nil
      end)
      t.record("accept_messages", accept_messages())
      vim.cmd("KeelRestart")
      t.wait("keel-lsp to come back", function()
        local c = keel.client(buf)
        return c and c.initialized and c.id ~= client.id
      end)
      t.record("restarted", true)
    end
  end
  -- Still responsive: a timer fires and a command runs.
  local fired = false
  vim.defer_fn(function() fired = true end, 10)
  t.wait("a timer", function() return fired end, 2000)
  t.record("responsive", vim.fn.eval("1 + 1") == 2)
end
