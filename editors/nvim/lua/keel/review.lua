--- Keel's inline preview and hunk-by-hunk review of a pending edit.
---
--- The proposed change is drawn in the buffer of the file it edits: removed lines highlighted
--- (`KeelRemoved`), added lines as virtual lines under them (`KeelAdded`), and a label at the end
--- of each hunk's first line. The hunks come from the server (`keel/pending`, field `hunks`); the
--- user keeps or drops them one by one, and once each is decided the answer goes back as one
--- `keel.step.accept { step, hunks = { kept indices } }` (none kept: `keel.step.reject`). The
--- preview follows the pending step: a new proposal ("another") replaces it, an answer or the
--- episode's end clears it.
local M = {}

M.ns = vim.api.nvim_create_namespace("keel_review")

--- Per buffer: `{ step = id, hunks = { {index, line, removed, added}, ... }, kept = { [index] = bool } }`.
M.reviews = {}

local function keel()
  return require("keel")
end

function M.define_highlights()
  local set = function(name, opts)
    opts.default = true
    vim.api.nvim_set_hl(0, name, opts)
  end
  set("KeelRemoved", { link = "DiffDelete" })
  set("KeelRemovedText", { strikethrough = true })
  set("KeelAdded", { link = "DiffAdd" })
  set("KeelHunkLabel", { link = "Comment" })
  set("KeelHunkKept", { link = "DiagnosticOk" })
  set("KeelHunkDropped", { link = "DiagnosticWarn" })
end

local function label(r, h)
  local n = #r.hunks
  local k = r.kept[h.index]
  local state = k == true and "kept" or k == false and "dropped" or "undecided"
  local group = k == true and "KeelHunkKept" or k == false and "KeelHunkDropped" or "KeelHunkLabel"
  return { { string.format("  Keel hunk %d/%d: %s", h.index + 1, n, state), group } }
end

--- Draws the review of `bufnr` (or clears it when there is none).
function M.draw(bufnr)
  if not vim.api.nvim_buf_is_valid(bufnr) then
    return
  end
  vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  local r = M.reviews[bufnr]
  if not r then
    return
  end
  local count = vim.api.nvim_buf_line_count(bufnr)
  for _, h in ipairs(r.hunks) do
    local dropped = r.kept[h.index] == false
    local kept = r.kept[h.index] == true
    local first = math.min(h.line, count - 1)
    local removed = #h.removed
    for k = 0, removed - 1 do
      local row = h.line + k
      if row < count then
        local len = #(vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or "")
        vim.api.nvim_buf_set_extmark(bufnr, M.ns, row, 0, {
          end_row = row,
          end_col = len,
          hl_group = (not dropped) and "KeelRemovedText" or nil,
          line_hl_group = (not dropped) and "KeelRemoved" or nil,
          sign_text = "-",
          sign_hl_group = "KeelRemoved",
          priority = 200,
        })
      end
    end
    if #h.added > 0 and not dropped then
      local lines = {}
      for _, text in ipairs(h.added) do
        table.insert(lines, { { "+ " .. text, kept and "KeelHunkKept" or "KeelAdded" } })
      end
      -- Under the last removed line; for a pure insertion, above the line it goes before (or under
      -- the buffer's last line when it goes at the end).
      local opts = { virt_lines = lines, priority = 200 }
      local row
      if removed > 0 then
        row = math.min(h.line + removed - 1, count - 1)
      elseif h.line < count then
        row = h.line
        opts.virt_lines_above = true
      else
        row = count - 1
      end
      vim.api.nvim_buf_set_extmark(bufnr, M.ns, row, 0, opts)
    end
    vim.api.nvim_buf_set_extmark(bufnr, M.ns, first, 0, { virt_text = label(r, h), virt_text_pos = "eol", priority = 200 })
  end
end

--- Asks the server for the buffer's pending edit and redraws; a new step resets the choices.
function M.refresh(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if not vim.api.nvim_buf_is_valid(bufnr) or vim.api.nvim_buf_get_name(bufnr) == "" then
    return
  end
  local c = keel().client(bufnr)
  if not c then
    M.reviews[bufnr] = nil
    return M.draw(bufnr)
  end
  c:request("keel/pending", { uri = vim.uri_from_bufnr(bufnr) }, function(err, steps)
    if err or not vim.api.nvim_buf_is_valid(bufnr) then
      return
    end
    local step
    for _, s in ipairs(steps or {}) do
      if s.tool == "edit" and type(s.hunks) == "table" and #s.hunks > 0 then
        step = s
        break
      end
    end
    if not step then
      M.reviews[bufnr] = nil
    else
      local old = M.reviews[bufnr]
      local kept = (old and old.step == step.step) and old.kept or {}
      M.reviews[bufnr] = { step = step.step, hunks = step.hunks, kept = kept, title = step.title }
    end
    M.draw(bufnr)
    vim.api.nvim_exec_autocmds("User", { pattern = "KeelReview", modeline = false })
  end, bufnr)
end

--- Refreshes every buffer a keel client is attached to.
function M.refresh_all()
  for _, c in ipairs(vim.lsp.get_clients({ name = "keel" })) do
    for buf in pairs(c.attached_buffers or {}) do
      M.refresh(buf)
    end
  end
end

local function review_or_warn(bufnr)
  local r = M.reviews[bufnr]
  if not r then
    keel()._notify("no pending edit to review in this buffer", vim.log.levels.WARN)
  end
  return r
end

--- The hunk at the cursor: the one whose lines hold it, else the next one below, else the last.
local function hunk_at(r, line)
  local best
  for _, h in ipairs(r.hunks) do
    local last = h.line + math.max(#h.removed, 1) - 1
    if line >= h.line and line <= last then
      return h
    end
    if not best and h.line > line then
      best = h
    end
  end
  return best or r.hunks[#r.hunks]
end

local function goto_hunk(h)
  local count = vim.api.nvim_buf_line_count(0)
  vim.api.nvim_win_set_cursor(0, { math.min(h.line, count - 1) + 1, 0 })
end

--- Moves the cursor to the next (`dir` 1) or previous (-1) hunk, wrapping around.
function M.jump(dir)
  local r = review_or_warn(vim.api.nvim_get_current_buf())
  if not r then
    return
  end
  local line = vim.api.nvim_win_get_cursor(0)[1] - 1
  local hs = r.hunks
  if dir > 0 then
    for _, h in ipairs(hs) do
      if h.line > line then
        return goto_hunk(h)
      end
    end
    return goto_hunk(hs[1])
  end
  for i = #hs, 1, -1 do
    if hs[i].line < line then
      return goto_hunk(hs[i])
    end
  end
  goto_hunk(hs[#hs])
end

--- Sends the answer once every hunk is decided.
local function finish_if_decided(bufnr, r)
  local kept = {}
  for _, h in ipairs(r.hunks) do
    local k = r.kept[h.index]
    if k == nil then
      return false
    end
    if k then
      table.insert(kept, h.index)
    end
  end
  M.reviews[bufnr] = nil
  M.draw(bufnr)
  if #kept == 0 then
    keel().execute("keel.step.reject", { step = r.step }, nil, bufnr)
  else
    keel().execute("keel.step.accept", { step = r.step, hunks = kept }, function(err, result)
      if not err and type(result) == "table" and result.applied == false then
        keel()._notify("the edit was not applied" .. (result.reason and (": " .. result.reason) or ""), vim.log.levels.WARN)
      end
    end, bufnr)
  end
  return true
end

--- Keeps (`keep` true) or drops the hunk at the cursor, then moves to the next undecided one; the
--- last decision sends the answer.
function M.decide(keep)
  local bufnr = vim.api.nvim_get_current_buf()
  local r = review_or_warn(bufnr)
  if not r then
    return
  end
  local h = hunk_at(r, vim.api.nvim_win_get_cursor(0)[1] - 1)
  r.kept[h.index] = keep
  if finish_if_decided(bufnr, r) then
    return
  end
  M.draw(bufnr)
  for _, x in ipairs(r.hunks) do
    if r.kept[x.index] == nil and x.line > h.line then
      return goto_hunk(x)
    end
  end
  for _, x in ipairs(r.hunks) do
    if r.kept[x.index] == nil then
      return goto_hunk(x)
    end
  end
end

--- The choices so far on the buffer's review (for tests and status lines): `{ [index] = bool }`.
function M.choices(bufnr)
  local r = M.reviews[bufnr or vim.api.nvim_get_current_buf()]
  return r and r.kept
end

--- Sets the buffer-local keymaps of `keymaps` (a name → lhs table; `false` leaves one out).
function M.map(bufnr, keymaps)
  if not keymaps then
    return
  end
  local actions = {
    next_hunk = { function() M.jump(1) end, "Keel: next hunk of the pending edit" },
    prev_hunk = { function() M.jump(-1) end, "Keel: previous hunk of the pending edit" },
    accept_hunk = { function() M.decide(true) end, "Keel: keep this hunk" },
    reject_hunk = { function() M.decide(false) end, "Keel: drop this hunk" },
    accept_all = { function() keel().accept() end, "Keel: accept the whole pending step" },
    reject_all = { function() keel().reject() end, "Keel: reject the whole pending step" },
    another = { function() keel().another() end, "Keel: ask for another proposal" },
  }
  for name, lhs in pairs(keymaps) do
    local a = actions[name]
    if a and lhs then
      vim.keymap.set("n", lhs, a[1], { buffer = bufnr, desc = a[2], silent = true })
    end
  end
end

return M
