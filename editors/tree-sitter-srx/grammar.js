/**
 * @file Tree-sitter grammar of sr's `.srx` experiment files (the reference grammar is grammar/srx.pest).
 * @license MIT
 *
 * Newlines are whitespace: entries are separated by newlines, commas or spaces, as in the pest grammar.
 * The tree is meant for highlighting, folding and outlines; the compiler remains the judge of validity.
 */

/// <reference types="tree-sitter-cli/dsl" />
// @ts-check

const commaSep = (rule) => optional(seq(rule, repeat(seq(',', rule)), optional(',')));

module.exports = grammar({
  name: 'srx',

  extras: ($) => [/\s/, '\uFEFF', $.line_comment, $.block_comment],

  word: ($) => $.identifier,

  conflicts: ($) => [[$.name_list]],

  rules: {
    source_file: ($) => repeat(choice($.use_item, $.preset_item, $.experiment_item)),

    use_item: ($) => seq('use', choice($.string, $.use_path)),
    use_path: ($) => seq($.identifier, repeat(seq('.', choice($.identifier, $.use_list)))),
    use_list: ($) => seq('{', commaSep($.identifier), '}'),

    preset_item: ($) => seq('preset', field('name', $.identifier), '=', $.component),

    experiment_item: ($) =>
      seq(
        'experiment',
        field('name', $.identifier),
        optional(seq('extends', field('base', $.identifier))),
        '{',
        repeat(seq($._statement, optional(','))),
        '}',
      ),

    _statement: ($) => choice($.block, $.declaration, $.evaluate, $.assignment),

    block: ($) => seq($.key_path, $.body),
    declaration: ($) =>
      seq(field('kind', choice('data', 'sampler')), field('name', $.identifier), '=', $._value),
    evaluate: ($) =>
      seq('evaluate', $.component, 'on', field('split', $.identifier), optional(seq('with', $.name_list))),
    name_list: ($) => seq($.identifier, repeat(seq(',', $.identifier))),
    assignment: ($) => seq($.key_path, '=', $._value),
    key_path: ($) => seq($.identifier, repeat(seq('.', $.identifier))),

    body: ($) => seq('{', repeat(seq(choice($.block, $.assignment), optional(','))), '}'),

    component: ($) => prec.right(seq(field('name', $.identifier), optional($.body))),

    _value: ($) => choice($.range, $._expression),
    range: ($) => seq($._expression, choice('..', '..='), $._expression),
    _expression: ($) => choice($.binary, $.unary, $._atom),
    binary: ($) =>
      choice(
        prec.left(1, seq($._expression, field('operator', choice('+', '-')), $._expression)),
        prec.left(2, seq($._expression, field('operator', choice('*', '/')), $._expression)),
      ),
    unary: ($) => prec(3, seq('-', $._expression)),
    _atom: ($) =>
      choice($.float, $.integer, $.string, $.boolean, $.shape, $.group, $.list, $.component),

    float: (_) =>
      token(/[0-9][0-9_]*(\.[0-9][0-9_]*([eE][+-]?[0-9][0-9_]*)?|[eE][+-]?[0-9][0-9_]*)/),
    integer: (_) => token(/[0-9][0-9_]*/),
    boolean: (_) => choice('true', 'false'),
    string: (_) => token(seq('"', repeat(choice(/[^"\\\n]/, /\\./)), '"')),
    dtype: (_) => choice('f32', 'f16', 'bf16', 'f64', 'u8', 'i64'),
    shape: ($) => seq($.dtype, '[', commaSep($._value), ']'),
    group: ($) => seq('(', commaSep($._value), ')'),
    list: ($) => seq('[', commaSep($._value), ']'),

    identifier: (_) => /[A-Za-z_][A-Za-z0-9_]*/,

    line_comment: (_) => token(seq('//', /[^\n]*/)),
    block_comment: (_) => token(seq('/*', /[^*]*\*+([^/*][^*]*\*+)*/, '/')),
  },
});
