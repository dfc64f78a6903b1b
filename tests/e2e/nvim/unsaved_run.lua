-- An accepted `run` after an accepted, unsaved edit, in Neovim: :KeelAsk on `return a - b`, accept
-- the edit (the buffer changes, nothing is written), accept the `run` that reads the file, and the
-- episode finishes. The buffer is never saved; the Rust side checks the disk and the store.
return function(t)
  local keel = require("keel")
  keel.setup({
    server_path = vim.env.KEEL_E2E_LSP,
    model = { endpoint = vim.env.KEEL_E2E_ENDPOINT, name = "scripted" },
    store = vim.env.KEEL_E2E_STORE,
    limits = { request_timeout_secs = 5, watch_secs = 1 },
    -- Where accepted `run` steps execute: the container engine, as a user would configure it.
    cmd_env = { DOCKER_HOST = assert(vim.env.KEEL_E2E_DOCKER_HOST, "KEEL_E2E_DOCKER_HOST") },
  })

  local buf, client = t.open("calc.py")
  local function status()
    return keel.status[client.id] or {}
  end
  local function text()
    return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n") .. "\n"
  end

  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  vim.cmd("2KeelAsk make add add")
  t.wait("the proposed edit", function()
    return status().state == "pending"
  end)
  local edit_step = status().step
  t.record("edit_step", edit_step)

  vim.cmd("KeelAccept")
  t.wait("the accepted edit in the buffer", function()
    return text():find("return a + b", 1, true)
  end)
  t.wait("the proposed run", function()
    local st = status()
    return st.state == "pending" and st.step ~= edit_step
  end)
  t.record("run_step", status().step)
  t.record("run_title", status().message)
  -- The edit is in the buffer only: Neovim has not written it.
  t.record("modified_before_run", vim.bo[buf].modified)

  vim.cmd("KeelAccept")
  -- The container starts, runs the command, goes; then the model finishes.
  t.wait("the episode to finish", function()
    return status().state == "finished"
  end, 120000)
  t.record("buffer_final", text())
  t.record("modified_at_end", vim.bo[buf].modified)
  t.record("errors", t.notes_matching(".", vim.log.levels.ERROR))
end
