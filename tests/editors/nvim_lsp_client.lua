-- Neovim's built-in LSP client (0.7+) driving `sf lsp --stdio`, headless:
--   SF_CMD (JSON array: the server command), SF_ROOT (the repository), SF_CONFLICT (a file with
--   conflict markers, relative to SF_ROOT), SF_OUT (where to write the JSON report)
--   nvim --headless -u NONE -c "luafile nvim_lsp_client.lua"
-- Every custom request is sent with an empty Lua table where it has no params: Neovim encodes
-- `{}` as `[]`, which is what the server must accept. The report holds each answer or error.
local root = os.getenv("SF_ROOT")
local report = { requests = {}, diagnostics = {}, codeActions = {}, changed = 0, errors = {} }

local function finish()
  local f = assert(io.open(os.getenv("SF_OUT"), "w"))
  f:write(vim.fn.json_encode(report))
  f:close()
  vim.cmd("qa!")
end

local ok, err = pcall(function()
  local id = vim.lsp.start_client({
    name = "stoneforge",
    cmd = vim.fn.json_decode(os.getenv("SF_CMD")),
    root_dir = root,
    handlers = {
      ["stoneforge/changed"] = function() report.changed = report.changed + 1 end,
      ["window/showMessage"] = function() end,
    },
  })
  assert(id, "the client did not start")
  local client = vim.lsp.get_client_by_id(id)
  assert(vim.wait(60000, function() return client.initialized end, 50), "no initialize answer in 60 s")

  local function call(name, method, params)
    local resp, e = client.request_sync(method, params, 60000, 0)
    if resp == nil then
      report.requests[name] = { error = { message = tostring(e) } }
    elseif resp.err then
      report.requests[name] = { error = resp.err }
    else
      report.requests[name] = { result = resp.result }
    end
  end

  call("workspace", "stoneforge/workspace", {})
  call("createTask", "stoneforge/createTask", { title = "From Neovim" })
  call("status", "stoneforge/status", {})
  call("taskTree", "stoneforge/taskTree", {})
  call("listTasks", "stoneforge/listTasks", {})
  call("handoffs", "stoneforge/handoffs", {})
  call("command", "workspace/executeCommand", { command = "stoneforge.listTasks", arguments = { {} } })

  -- Standard parts: diagnostics and quick fixes for conflict markers.
  vim.cmd("edit " .. vim.fn.fnameescape(root .. "/" .. os.getenv("SF_CONFLICT")))
  local buf = vim.api.nvim_get_current_buf()
  vim.lsp.buf_attach_client(buf, id)
  vim.wait(30000, function() return #vim.diagnostic.get(buf) > 0 end, 50)
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    table.insert(report.diagnostics, { message = d.message, lnum = d.lnum, source = d.source })
  end
  local resp = client.request_sync("textDocument/codeAction", {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    range = { start = { line = 1, character = 0 }, ["end"] = { line = 1, character = 0 } },
    context = { diagnostics = {} },
  }, 30000, buf)
  for _, action in ipairs((resp and resp.result) or {}) do
    table.insert(report.codeActions, action.title)
  end
  vim.wait(2000, function() return report.changed > 0 end, 50)
  client.stop()
  vim.wait(10000, function() return client.is_stopped() end, 50)
end)
if not ok then table.insert(report.errors, tostring(err)) end
finish()
