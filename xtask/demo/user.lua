-- The demo's simulated user, in a real headless Neovim with Keel's plugin (run through the e2e
-- harness, tests/e2e/nvim/init.lua). It starts `Keel: implement` on calc.py several times and
-- decides every proposal by a stated rule:
--
--   run  — accept a command that starts with a letter (it runs in the sandbox); otherwise ask for
--          another, three times at most, then reject it.
--   edit — accept it if calc.py still defines add() afterwards; otherwise reject it.
--
-- Each decision is logged for the demo to print.
return function(t)
  local keel = require("keel")
  keel.setup({
    server_path = vim.env.KEEL_DEMO_LSP,
    model = { endpoint = vim.env.KEEL_DEMO_ENDPOINT, name = "keel" },
    store = vim.env.KEEL_DEMO_STORE,
    limits = { max_steps = 8, max_auto_steps = 6, request_timeout_secs = 300 },
  })
  vim.cmd.edit(vim.env.KEEL_DEMO_ROOT .. "/calc.py")
  local buf = vim.api.nvim_get_current_buf()
  t.wait("keel-lsp to attach", function()
    return #vim.lsp.get_clients({ name = "keel", bufnr = buf }) > 0
  end)
  local client = keel.client(buf)
  t.wait("initialize", function()
    return client.initialized
  end)

  local log = {}
  local function say(s)
    table.insert(log, s)
    io.stdout:write(s .. "\n")
  end
  local episodes = tonumber(vim.env.KEEL_DEMO_EPISODES or "6")
  local ends = {}
  for e = 1, episodes do
    local started = nil
    keel.execute("keel.episode.start", {
      uri = vim.uri_from_bufnr(buf),
      range = { start = { line = 1, character = 4 }, ["end"] = { line = 1, character = 16 } },
      kind = "implement",
    }, function(err, r)
      started = (not err and r and r.episode) or false
    end, buf)
    t.wait("the episode to start", function()
      return started ~= nil
    end)
    if not started then
      say(string.format("episode %d: could not start", e))
      goto continue
    end
    do
      local handled, retries = {}, 0
      while true do
        local st
        t.wait("a proposal or the end of episode " .. e, function()
          st = keel.status[client.id]
          return st and st.episode == started
            and ((st.state == "pending" and not handled[st.step])
              or st.state == "finished" or st.state == "cancelled" or st.state == "error")
        end, 300000)
        if st.state ~= "pending" then
          ends[st.state] = (ends[st.state] or 0) + 1
          break
        end
        handled[st.step] = true
        local steps
        keel.pending(buf, function(_, s)
          steps = s
        end, true)
        t.wait("keel/pending", function()
          return steps ~= nil
        end)
        local p
        for _, s in ipairs(steps) do
          if s.step == st.step then
            p = s
          end
        end
        if not p then
          goto next
        end
        if p.tool == "run" then
          local cmd = p.command or ""
          local shown = vim.fn.strcharpart(cmd, 0, 30)
          if cmd:match("^%a") then
            say(string.format("episode %d: run %q → accept (it runs in the sandbox)", e, shown))
            keel.execute("keel.step.accept", { step = p.step })
          elseif retries < 3 then
            retries = retries + 1
            say(string.format("episode %d: run %q → another (does not start with a letter)", e, shown))
            keel.execute("keel.step.retry", { step = p.step })
          else
            say(string.format("episode %d: run %q → reject", e, shown))
            keel.execute("keel.step.reject", { step = p.step, reason = "a command starts with a letter" })
          end
        else
          local ok = (p.proposed or ""):find("def add", 1, true) ~= nil
          say(string.format("episode %d: edit → %s", e, ok and "accept (add() is still there)" or "reject (it removes add())"))
          if ok then
            keel.execute("keel.step.accept", { step = p.step })
          else
            keel.execute("keel.step.reject", { step = p.step, reason = "it removes add()" })
          end
        end
        ::next::
      end
    end
    ::continue::
  end
  local parts = {}
  for k, n in pairs(ends) do
    table.insert(parts, string.format("%d %s", n, k))
  end
  table.sort(parts)
  say(string.format("episodes: %d — %s", episodes, table.concat(parts, ", ")))
  t.record("log", log)
end
