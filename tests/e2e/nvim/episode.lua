-- An episode in Neovim: open a file, pick the Keel code action, see the pending lens, diff it, ask for
-- another, accept; then a second episode rejected with a reason, then cancelled; :checkhealth keel.
return function(t)
  local keel = require("keel")
  local enabled = keel.setup({
    server_path = vim.env.KEEL_E2E_LSP,
    model = { endpoint = vim.env.KEEL_E2E_ENDPOINT, name = "scripted" },
    store = vim.env.KEEL_E2E_STORE,
    limits = { request_timeout_secs = 5, watch_secs = 1 },
  })
  t.record("enabled", enabled)

  local buf, client = t.open("calc.py")
  t.record("root_dir", client.root_dir)

  -- Pick the Keel code action on `return a - b` (line 2) the way a user would, through
  -- vim.lsp.buf.code_action with a filter on the title.
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  local titles = {}
  local done = false
  client:request("textDocument/codeAction", {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    range = { start = { line = 1, character = 4 }, ["end"] = { line = 1, character = 16 } },
    context = { diagnostics = {} },
  }, function(_, result)
    for _, a in ipairs(result or {}) do
      table.insert(titles, a.title)
    end
    done = true
  end, buf)
  t.wait("the code action list", function()
    return done
  end)
  t.record("action_titles", titles)
  vim.lsp.buf.code_action({
    apply = true,
    filter = function(a)
      return a.title == "Keel: implement"
    end,
  })

  local function state()
    local st = keel.status[client.id]
    return st and st.state
  end
  t.wait("a pending step", function()
    return state() == "pending"
  end)
  local first = keel.status[client.id].step
  t.record("first_step", first)
  t.record("model_version", keel.status[client.id].model_version)
  t.record("statusline", keel.statusline(buf))

  -- The lenses come on their own (keel/status + workspace/codeLens/refresh), nobody calls refresh here.
  t.wait("the pending step's lenses", function()
    return #vim.lsp.codelens.get(buf) >= 3
  end)
  local lenses = {}
  for _, l in ipairs(vim.lsp.codelens.get(buf)) do
    table.insert(lenses, { title = l.command and l.command.title, command = l.command and l.command.command,
      line = l.range.start.line, step = l.command and l.command.arguments and l.command.arguments[1].step })
  end
  table.sort(lenses, function(a, b) return a.title < b.title end)
  t.record("lenses", lenses)

  -- :KeelDiff opens original | proposed in a new tab.
  vim.cmd("KeelDiff")
  t.wait("the diff tab", function()
    return keel.last_diff ~= nil
  end)
  local d = keel.last_diff
  t.record("diff_original", table.concat(vim.api.nvim_buf_get_lines(d.original, 0, -1, false), "\n"))
  t.record("diff_proposed", table.concat(vim.api.nvim_buf_get_lines(d.proposed, 0, -1, false), "\n"))
  t.record("diff_windows", #vim.api.nvim_tabpage_list_wins(0))
  t.record("diff_on", vim.wo.diff)
  vim.cmd("tabclose")
  vim.api.nvim_set_current_buf(buf)
  vim.api.nvim_win_set_cursor(0, { 2, 4 })

  -- Another: a sibling at the same state.
  vim.cmd("KeelAnother")
  t.wait("another pending step", function()
    local st = keel.status[client.id]
    return st.state == "pending" and st.step ~= first
  end)
  local second = keel.status[client.id].step
  t.record("second_step", second)
  t.wait("the lenses of the second step", function()
    local ls = vim.lsp.codelens.get(buf)
    return #ls >= 3 and ls[1].command.arguments[1].step == second
  end)

  -- Accept: the server sends workspace/applyEdit, Neovim applies it to the buffer.
  vim.cmd("KeelAccept")
  t.wait("the accepted edit in the buffer", function()
    return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n"):find("return a + b", 1, true)
  end)
  t.wait("the episode to finish", function()
    return state() == "finished"
  end)
  t.record("buffer_after_accept", table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n") .. "\n")
  vim.cmd("write")
  t.wait("the lenses to go", function()
    return #vim.lsp.codelens.get(buf) == 0
  end)

  -- Second episode: :KeelAsk on `return a * b` (line 6), reject with a reason, then cancel.
  vim.api.nvim_win_set_cursor(0, { 6, 4 })
  vim.cmd("6KeelAsk make mul commutative-safe")
  t.wait("a pending step of the second episode", function()
    local st = keel.status[client.id]
    return st.state == "pending" and st.step ~= second and st.step ~= first
  end)
  local third = keel.status[client.id].step
  local ep2 = keel.status[client.id].episode
  t.record("third_step", third)
  t.record("episode2", ep2)
  vim.cmd("KeelReject swaps the operands for nothing")
  t.wait("the next proposal after the rejection", function()
    local st = keel.status[client.id]
    return st.state == "pending" and st.step ~= third
  end)
  vim.cmd("KeelStatus")
  vim.cmd("KeelCancel")
  t.wait("the cancelled episode", function()
    return state() == "cancelled"
  end)
  t.record("buffer_final", table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n") .. "\n")

  -- :checkhealth keel with a healthy setup.
  vim.cmd("checkhealth keel")
  t.record("health", table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n"))
end
