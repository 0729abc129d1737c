(source_file) @local.scope
(preset_item name: (identifier) @local.definition)
(declaration name: (identifier) @local.definition)
(component name: (identifier) @local.reference)
(name_list (identifier) @local.reference)
