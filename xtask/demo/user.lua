-- The demo's simulated user, in a real headless Neovim with Keel's plugin (run through the e2e
-- harness, tests/e2e/nvim/init.lua). It starts episodes on calc.py (implement, write a test, or an
-- instruction, on add() or mul()) and decides every proposal by a stated rule:
--
--   run  — accept a command a person can read: at most 60 characters, all plain ASCII (it runs in
--          the sandbox) and, with KEEL_DEMO_RUN_RULE=tests (the real model), one that runs the
--          tests (it mentions "test"); otherwise ask for another, three times at most, then reject.
--   edit — accept it if calc.py still defines add() afterwards; otherwise reject it.
--
-- Each decision is logged for the demo to print.
return function(t)
  local keel = require("keel")
  keel.setup({
    server_path = vim.env.KEEL_DEMO_LSP,
    model = { endpoint = vim.env.KEEL_DEMO_ENDPOINT, name = "keel" },
    store = vim.env.KEEL_DEMO_STORE,
    limits = { max_steps = tonumber(vim.env.KEEL_DEMO_MAX_STEPS or "8"), max_auto_steps = 6, request_timeout_secs = 300 },
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
  -- With a real model the user wants the tests run, and says so by asking for another command;
  -- a tiny random model never writes one, so its user only asks for commands a person can read.
  local tests_only = vim.env.KEEL_DEMO_RUN_RULE == "tests"
  local why_not = tests_only and "run the tests (a short plain-ASCII command that mentions test)"
    or "a command should be short plain ASCII"
  local ends = {}
  local tasks = {
    { kind = "implement", line = 1 },
    { kind = "instruction", line = 1, instruction = "run the tests" },
    { kind = "implement", line = 5 },
    { kind = "instruction", line = 5, instruction = "show me what mul does" },
    { kind = "instruction", line = 1, instruction = "make add pass its test" },
    { kind = "write_test", line = 5 },
    { kind = "instruction", line = 1, instruction = "run test_calc.py" },
    { kind = "instruction", line = 1, instruction = "add() subtracts; make it add" },
    { kind = "write_test", line = 1 },
    { kind = "instruction", line = 5, instruction = "check that mul passes its test" },
  }
  for e = 1, episodes do
    local started = nil
    -- Tasks vary (the function, the kind, the instruction), so episodes start from different
    -- states and the scheduler's held-out split (by state) has something to split.
    local task = tasks[(e - 1) % #tasks + 1]
    keel.execute("keel.episode.start", {
      uri = vim.uri_from_bufnr(buf),
      range = { start = { line = task.line, character = 4 }, ["end"] = { line = task.line, character = 16 } },
      kind = task.kind,
      instruction = task.instruction,
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
          local readable = vim.fn.strchars(cmd) <= 60 and not cmd:find("[\128-\255]")
          local wanted = readable and (not tests_only or cmd:find("test", 1, true) ~= nil)
          if wanted then
            say(string.format("episode %d: run %q → accept (it runs in the sandbox)", e, shown))
            keel.execute("keel.step.accept", { step = p.step })
          elseif retries < 3 then
            retries = retries + 1
            say(string.format("episode %d: run %q → another (%s)", e, shown, why_not))
            keel.execute("keel.step.retry", { step = p.step })
          else
            say(string.format("episode %d: run %q → reject", e, shown))
            keel.execute("keel.step.reject", { step = p.step, reason = why_not })
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
