-- Headless check of the Neovim set-up in docs/EDITORS.md: the tree-sitter parser loads and parses the
-- examples without errors, the queries compile, and `sr lsp` attaches and publishes diagnostics.
-- Works from Neovim 0.7 (Debian 12) on: it uses vim.lsp.start where it exists, else vim.lsp.start_client.
-- Usage: SR_BIN=target/debug/sr SR_PARSER_DIR=DIR nvim --headless -u NONE -l editors/neovim/check.lua
--        (Neovim < 0.9: nvim --headless -u NONE -c "luafile editors/neovim/check.lua")

local function fail(msg)
  io.stderr:write("neovim check: " .. msg .. "\n")
  vim.cmd("cquit 1")
end

local ok_all, err = pcall(function()
  local sr = assert(os.getenv("SR_BIN"), "set SR_BIN")
  local rtp = assert(os.getenv("SR_PARSER_DIR"), "set SR_PARSER_DIR (holds parser/srx.so and queries/srx/)")
  vim.opt.runtimepath:prepend(rtp)
  vim.g.do_filetype_lua = 1 -- Neovim 0.7 only: vim.filetype.add needs it (later releases ignore it)
  vim.cmd("filetype on")
  vim.filetype.add({ extension = { srx = "srx" } })

  -- Tree-sitter: parse every example.
  local examples = vim.fn.glob("examples/*.srx", false, true)
  assert(#examples >= 5, "no examples found (run from the repository root)")
  for _, path in ipairs(examples) do
    vim.cmd("edit " .. path)
    local buf = vim.api.nvim_get_current_buf()
    assert(vim.bo[buf].filetype == "srx", path .. ": filetype is " .. vim.bo[buf].filetype)
    local parser = vim.treesitter.get_parser(buf, "srx")
    local root = parser:parse()[1]:root()
    assert(not root:has_error(), path .. ": the tree has errors")
  end
  local get_query = vim.treesitter.query.get or vim.treesitter.query.get_query or vim.treesitter.get_query
  for _, name in ipairs({ "highlights", "folds", "locals" }) do
    assert(get_query("srx", name), name .. ".scm not found or invalid")
  end

  -- Language server: a misspelt flow gives E0301.
  local bad = vim.fn.tempname() .. ".srx"
  local text = table.concat(vim.fn.readfile("examples/quickstart.srx"), "\n"):gsub("flow = rectified", "flow = rectifed")
  vim.fn.writefile(vim.split(text, "\n"), bad)
  vim.cmd("edit " .. bad)
  local buf = vim.api.nvim_get_current_buf()
  local config = { name = "sr", cmd = { sr, "lsp" }, root_dir = vim.fn.getcwd() }
  if vim.lsp.start then
    vim.lsp.start(config)
  else
    local id = assert(vim.lsp.start_client(config), "sr lsp did not start")
    vim.lsp.buf_attach_client(buf, id)
  end
  local got = vim.wait(20000, function() return #vim.diagnostic.get(buf) > 0 end, 100)
  assert(got, "no diagnostics from sr lsp within 20 s")
  local d = vim.diagnostic.get(buf)[1]
  assert(d.code == "E0301", "expected E0301, got " .. tostring(d.code) .. ": " .. d.message)
  print(string.format("neovim %s: %d examples parsed, queries load, sr lsp reports %s on line %d",
    tostring(vim.version().major .. "." .. vim.version().minor .. "." .. vim.version().patch), #examples, d.code, d.lnum + 1))
end)

if not ok_all then
  fail(tostring(err))
else
  vim.cmd("qall!")
end
