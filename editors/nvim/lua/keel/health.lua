--- :checkhealth keel — the binary, the model endpoint, the store.
local M = {}

local health = vim.health

local function nonnil(v)
  return v ~= nil and v ~= vim.NIL and v ~= ""
end

--- Runs `keel-lsp --version`; returns (ok, text).
function M.check_binary(cfg)
  local keel = require("keel")
  local found, where = keel.find_binary(cfg)
  if not found then
    return false, where
  end
  local cmd = cfg.cmd or { cfg.server_path and vim.fn.expand(cfg.server_path) or "keel-lsp" }
  if type(cmd) == "function" then
    return true, "the server command is a function; not checked"
  end
  local ok, res = pcall(function()
    return vim.system({ cmd[1], "--version" }, { text = true }):wait(5000)
  end)
  if not ok then
    return false, string.format("`%s --version` could not run: %s", where, tostring(res))
  end
  if res.code ~= 0 then
    return false, string.format("`%s --version` failed (exit %s): %s", where, tostring(res.code),
      vim.trim((res.stderr or "") .. (res.stdout or "")))
  end
  return true, string.format("%s (%s)", vim.trim(res.stdout or ""), where)
end

--- GET <endpoint>/models with a short timeout; returns (ok, text).
function M.check_endpoint(endpoint, api_key_env, timeout_s)
  if not nonnil(endpoint) then
    return nil, "no model endpoint set (setup({ model = { endpoint = ... } }) or $KEEL_MODEL_ENDPOINT)"
  end
  if vim.fn.executable("curl") ~= 1 then
    return nil, "curl is not installed: cannot check " .. endpoint
  end
  local url = endpoint:gsub("/+$", "") .. "/models"
  local args = { "curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", tostring(timeout_s or 3), url }
  if nonnil(api_key_env) then
    local key = vim.env[api_key_env]
    if nonnil(key) then
      table.insert(args, 2, "Authorization: Bearer " .. key)
      table.insert(args, 2, "-H")
    end
  end
  local ok, res = pcall(function()
    return vim.system(args, { text = true }):wait(((timeout_s or 3) + 2) * 1000)
  end)
  if not ok then
    return false, "could not run curl: " .. tostring(res)
  end
  if res.code ~= 0 then
    return false, string.format("%s is unreachable: %s", url, vim.trim(res.stderr or ("curl exit " .. res.code)))
  end
  local out = res.stdout or ""
  local status = tonumber(out:match("(%d+)%s*$"))
  if not status or status >= 400 then
    return false, string.format("%s answered HTTP %s", url, tostring(status))
  end
  local body = out:gsub("\n%d+%s*$", "")
  local okj, decoded = pcall(vim.json.decode, body)
  local ids = {}
  if okj and type(decoded) == "table" and type(decoded.data) == "table" then
    for _, m in ipairs(decoded.data) do
      if type(m) == "table" and m.id then
        table.insert(ids, tostring(m.id))
      end
    end
  end
  return true, string.format("%s answered (models: %s)", url, #ids > 0 and table.concat(ids, ", ") or "none listed")
end

--- The store's directory exists (or can be created) and is writable; returns (ok, text).
function M.check_store(store)
  local path = store
  local from = "setup({ store = ... })"
  if not nonnil(path) then
    path, from = vim.env.KEEL_STORE, "$KEEL_STORE"
  end
  if not nonnil(path) then
    local data = nonnil(vim.env.XDG_DATA_HOME) and vim.env.XDG_DATA_HOME or (vim.env.HOME .. "/.local/share")
    path, from = data .. "/keel/keel.db", "the default"
  end
  path = vim.fn.expand(path)
  if vim.fn.isdirectory(path) == 1 then
    return false, string.format("%s (%s) is a directory; it must be a file path", path, from)
  end
  local dir = vim.fn.fnamemodify(path, ":h")
  local existing = dir
  while vim.fn.isdirectory(existing) == 0 do
    local parent = vim.fn.fnamemodify(existing, ":h")
    if parent == existing then
      break
    end
    existing = parent
  end
  if vim.fn.filewritable(existing) ~= 2 then
    return false, string.format("%s (%s): %s is not writable", path, from, existing)
  end
  if vim.fn.filereadable(path) == 1 and vim.fn.filewritable(path) ~= 1 then
    return false, string.format("%s (%s) exists but is not writable", path, from)
  end
  local exists = vim.fn.filereadable(path) == 1
  return true, string.format("%s (%s)%s", path, from, exists and "" or " — will be created on first use")
end

function M.check()
  local keel = require("keel")
  local cfg = keel.config
  health.start("keel: server binary")
  if vim.fn.has("nvim-0.11") ~= 1 then
    health.error("Neovim 0.11 or newer is required (vim.lsp.config / vim.lsp.enable)")
  end
  local ok, msg = M.check_binary(cfg)
  if ok then
    health.ok(msg)
  else
    health.error(msg, { "cargo build -p keel-server", "require('keel').setup({ server_path = '/path/to/keel-lsp' })" })
  end
  local clients = vim.lsp.get_clients({ name = "keel" })
  if #clients > 0 then
    health.ok(string.format("running (client %d); %s", clients[1].id, keel.statusline()))
  else
    health.info("not running in this session (it starts when a buffer of a configured filetype opens)")
  end

  health.start("keel: model endpoint")
  local model = cfg.model or {}
  local endpoint = nonnil(model.endpoint) and model.endpoint or vim.env.KEEL_MODEL_ENDPOINT
  local eok, emsg = M.check_endpoint(endpoint, model.api_key_env or "OPENAI_API_KEY", 3)
  if eok == true then
    health.ok(emsg)
  elseif eok == nil then
    health.warn(emsg)
  else
    health.error(emsg, { "start the model server, or fix setup({ model = { endpoint = ... } })" })
  end
  local key_env = model.api_key_env or "OPENAI_API_KEY"
  if nonnil(model.api_key_env) and not nonnil(vim.env[key_env]) then
    health.warn(string.format("$%s (api_key_env) is not set", key_env))
  end

  health.start("keel: trajectory store")
  local sok, smsg = M.check_store(cfg.store)
  if sok then
    health.ok(smsg)
  else
    health.error(smsg, { "setup({ store = '/a/writable/path/keel.db' }) or set $KEEL_STORE" })
  end
end

return M
