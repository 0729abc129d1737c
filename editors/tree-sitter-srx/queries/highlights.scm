; Highlighting of .srx files (capture names follow the common Neovim/Helix/Zed conventions).

(line_comment) @comment
(block_comment) @comment
((line_comment) @comment.documentation
  (#match? @comment.documentation "^///"))

[
  "use"
  "preset"
  "experiment"
  "extends"
  "evaluate"
  "on"
  "with"
  "data"
  "sampler"
] @keyword

(string) @string
(integer) @number
(float) @number.float
(boolean) @boolean
(dtype) @type.builtin

(experiment_item name: (identifier) @type)
(experiment_item base: (identifier) @type)
(preset_item name: (identifier) @constant)
(declaration name: (identifier) @variable)
(evaluate split: (identifier) @variable)
(name_list (identifier) @variable)
(use_path (identifier) @module)
(use_list (identifier) @function)
(component name: (identifier) @function)
(key_path (identifier) @property)

[
  "="
  "+"
  "-"
  "*"
  "/"
  ".."
  "..="
] @operator

[
  "{"
  "}"
  "["
  "]"
  "("
  ")"
] @punctuation.bracket

[
  ","
  "."
] @punctuation.delimiter
