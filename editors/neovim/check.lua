-- Headless check of the Neovim set-up in docs/EDITORS.md: the tree-sitter parser loads and parses the
-- examples without errors, the queries compile, and `sr lsp` attaches and publishes diagnostics.
-- Works from Neovim 0.7 (Debian 12) on: it runs the set-up of docs/EDITORS.md for this Neovim (0.11's
-- vim.lsp.config, 0.8's vim.lsp.start, or 0.7's vim.lsp.start_client) and compiles the others.
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
  -- The language-server set-ups of docs/EDITORS.md: every Lua block of its Neovim section must compile,
  -- and the one for this Neovim runs as written (with `sr` replaced by SR_BIN).
  local doc = table.concat(vim.fn.readfile("docs/EDITORS.md"), "\n")
  local section = assert(doc:match("### Neovim(.-)### Helix"), "docs/EDITORS.md has no Neovim section")
  local blocks = {}
  for code in section:gmatch("```lua\n(.-)```") do
    assert((loadstring or load)(code), "a Lua block of docs/EDITORS.md does not compile:\n" .. code)
    table.insert(blocks, code)
  end
  assert(#blocks == 3, "expected 3 Lua blocks in the Neovim section, found " .. #blocks)
  local function run_doc(code)
    code = code:gsub('{ "sr", "lsp" }', '{ "' .. sr .. '", "lsp" }')
    assert((loadstring or load)(code))()
  end
  run_doc(blocks[1]) -- filetype and tree-sitter highlighting
  local form
  if vim.lsp.config and vim.lsp.enable then
    form = "vim.lsp.config (0.11+)"
    run_doc(blocks[2])
  elseif vim.lsp.start then
    form = "vim.lsp.start (0.8+)"
    run_doc(blocks[3])
  else
    form = "vim.lsp.start_client (0.7)"
    local id = assert(vim.lsp.start_client({ name = "sr", cmd = { sr, "lsp" }, root_dir = vim.fn.getcwd() }))
    vim.api.nvim_create_autocmd("FileType", {
      pattern = "srx",
      callback = function(args) vim.lsp.buf_attach_client(args.buf, id) end,
    })
  end
  vim.cmd("edit " .. bad)
  local buf = vim.api.nvim_get_current_buf()
  local got = vim.wait(20000, function() return #vim.diagnostic.get(buf) > 0 end, 100)
  assert(got, "no diagnostics from sr lsp within 20 s")
  local d = vim.diagnostic.get(buf)[1]
  assert(d.code == "E0301", "expected E0301, got " .. tostring(d.code) .. ": " .. d.message)
  print(string.format("neovim %s: %d examples parsed, queries load, the docs' Lua compiles, sr lsp through %s reports %s on line %d",
    tostring(vim.version().major .. "." .. vim.version().minor .. "." .. vim.version().patch), #examples, form, d.code, d.lnum + 1))
end)

if not ok_all then
  fail(tostring(err))
else
  vim.cmd("qall!")
end
