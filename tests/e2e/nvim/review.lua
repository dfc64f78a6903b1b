-- The inline preview and the hunk review in Neovim: a proposal of three hunks is drawn in the
-- buffer, ]k / [k move between its hunks, "another" replaces the preview, keeping hunks 1 and 3 and
-- dropping hunk 2 (all from the keyboard) applies exactly hunks 1 and 3; the preview is gone
-- afterwards.
return function(t)
  local keel = require("keel")
  local review = require("keel.review")
  keel.setup({
    server_path = vim.env.KEEL_E2E_LSP,
    model = { endpoint = vim.env.KEEL_E2E_ENDPOINT, name = "scripted" },
    store = vim.env.KEEL_E2E_STORE,
    limits = { request_timeout_secs = 5, watch_secs = 1 },
  })
  local buf, client = t.open("calc.py")
  local function state()
    local st = keel.status[client.id]
    return st and st.state
  end

  -- What the preview draws: removed lines (highlighted rows), added virtual lines, labels.
  local function preview()
    local p = { removed_rows = {}, added = {}, labels = {} }
    for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, review.ns, 0, -1, { details = true })) do
      local row, d = m[2], m[4]
      if d.line_hl_group == "KeelRemoved" then
        table.insert(p.removed_rows, row)
      end
      for _, vl in ipairs(d.virt_lines or {}) do
        table.insert(p.added, { row = row, text = vl[1][1] })
      end
      for _, vt in ipairs(d.virt_text or {}) do
        table.insert(p.labels, { row = row, text = vt[1] })
      end
    end
    table.sort(p.removed_rows)
    return p
  end

  keel.execute("keel.episode.start", { uri = vim.uri_from_bufnr(buf), kind = "implement" }, nil, buf)
  t.wait("a pending step", function()
    return state() == "pending"
  end)
  local first = keel.status[client.id].step
  t.wait("the preview of the first proposal", function()
    return review.reviews[buf] and review.reviews[buf].step == first and #preview().added == 3
  end)
  t.record("first_step", first)
  t.record("preview_first", preview())
  t.record("buffer_untouched", table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n") .. "\n")

  -- ]k and [k: from the top to hunk 1 (line 2), hunk 2 (line 5), hunk 3 (line 9), back to hunk 2.
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  local rows = {}
  for _, key in ipairs({ "]k", "]k", "]k", "[k" }) do
    vim.cmd("normal " .. key)
    table.insert(rows, vim.api.nvim_win_get_cursor(0)[1])
  end
  t.record("jumps", rows)

  -- Another: the preview is replaced by the new proposal's.
  vim.cmd("KeelAnother")
  t.wait("the second proposal's preview", function()
    local r = review.reviews[buf]
    return r and r.step ~= first and #preview().added == 3
  end)
  local second = keel.status[client.id].step
  t.record("second_step", second)
  t.record("preview_second", preview())

  -- Keep hunk 1 (\ka at line 2), the cursor moves to hunk 2; drop it (\kr), the cursor moves to
  -- hunk 3; keep it (\ka): every hunk is decided, the answer goes out.
  vim.api.nvim_win_set_cursor(0, { 2, 0 })
  vim.cmd("normal \\ka")
  t.record("after_keep", { cursor = vim.api.nvim_win_get_cursor(0)[1], choices = review.choices(buf), labels = preview().labels })
  vim.cmd("normal \\kr")
  t.record("after_drop", { cursor = vim.api.nvim_win_get_cursor(0)[1], labels = preview().labels })
  -- The docs' picture: the window as Neovim draws it (text, highlights, virtual lines and text),
  -- through the built-in :TOhtml; the test turns it into a PNG with Chromium.
  if vim.env.KEEL_E2E_SHOT_HTML then
    vim.o.termguicolors = true
    vim.o.background = "dark"
    vim.cmd.colorscheme("default")
    local html = require("tohtml").tohtml(0, { title = "calc.py — Keel hunk review", number_lines = true })
    vim.fn.writefile(html, vim.env.KEEL_E2E_SHOT_HTML)
  end
  vim.cmd("normal \\ka")
  t.wait("the kept hunks in the buffer", function()
    local text = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
    return text:find("return a + b", 1, true) and text:find("def neg(a: float):", 1, true)
  end)
  t.wait("the episode to finish", function()
    return state() == "finished"
  end)
  vim.cmd("write")
  t.record("buffer_final", table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n") .. "\n")
  t.wait("the preview to go", function()
    return #vim.api.nvim_buf_get_extmarks(buf, review.ns, 0, -1, {}) == 0
  end)
  t.record("errors", t.notes_matching("", vim.log.levels.ERROR))
end
