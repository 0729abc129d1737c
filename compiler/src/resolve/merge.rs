//! Deep merging of values and tables (docs/LANGUAGE.md, "Merging").

use crate::source::Span;
use crate::value::{Field, Table, Value, ValueKind};

/// Merges `new` onto `old`, later wins:
/// the same component (or a component and a bare name of it) merge their tables key by key;
/// two blocks merge; a block onto a component merges into the component's table;
/// anything else replaces the old value whole.
pub fn merge_value(old: &mut Value, new: Value) {
    match (&mut old.kind, new.kind) {
        (
            ValueKind::Component { name: a, table: ta, .. },
            ValueKind::Component { name: b, table: tb, name_span },
        ) if *a == b => {
            merge_tables(ta, tb);
            if let ValueKind::Component { name_span: old_span, .. } = &mut old.kind {
                *old_span = name_span;
            }
            old.span = new.span;
        }
        (ValueKind::Component { name: a, .. }, ValueKind::Name(b)) if *a == b => {}
        (ValueKind::Block(ta), ValueKind::Block(tb))
        | (ValueKind::Component { table: ta, .. }, ValueKind::Block(tb)) => merge_tables(ta, tb),
        (_, kind) => *old = Value { kind, span: new.span },
    }
}

/// Merges every field of `new` into `old` with [`merge_value`].
pub fn merge_tables(old: &mut Table, new: Table) {
    for (key, field) in new.entries {
        merge_field(old, key, field);
    }
}

/// Merges one field into a table.
pub fn merge_field(table: &mut Table, key: String, field: Field) {
    match table.entries.get_mut(&key) {
        Some(existing) => {
            merge_value(&mut existing.value, field.value);
            existing.key_span = field.key_span;
            if field.doc.is_some() {
                existing.doc = field.doc;
            }
        }
        None => table.insert(key, field),
    }
}

/// Why a dotted path could not be followed.
#[derive(Debug)]
pub struct PathError {
    /// The index of the segment that could not be entered.
    pub segment: usize,
    /// The type of the value found there and where it was written.
    pub found: &'static str,
    pub found_span: Span,
}

/// The table at `path` inside `table`, creating blocks for missing segments and entering blocks and
/// components; fails on any other value.
pub fn table_at<'t>(table: &'t mut Table, path: &[(String, Span)]) -> Result<&'t mut Table, PathError> {
    let mut t = table;
    for (i, (key, span)) in path.iter().enumerate() {
        let field = t.entries.entry(key.clone()).or_insert_with(|| Field {
            value: Value::new(ValueKind::Block(Table::default()), *span),
            key_span: *span,
            doc: None,
        });
        let found = field.value.type_name();
        let found_span = field.value.span;
        t = match &mut field.value.kind {
            ValueKind::Block(inner) | ValueKind::Component { table: inner, .. } => inner,
            _ => return Err(PathError { segment: i, found, found_span }),
        };
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::SpanOf;

    fn int(i: i64) -> Value {
        Value::new(ValueKind::Int(i), Span::default())
    }

    fn field(v: Value) -> Field {
        Field { value: v, key_span: Span::default(), doc: None }
    }

    fn comp(name: &str, entries: &[(&str, Value)]) -> Value {
        let mut table = Table::default();
        for (k, v) in entries {
            table.insert(*k, field(v.clone()));
        }
        Value::new(
            ValueKind::Component { name: name.into(), name_span: SpanOf::default(), table },
            Span::default(),
        )
    }

    fn keys(v: &Value) -> Vec<(String, Value)> {
        match &v.kind {
            ValueKind::Component { table, .. } | ValueKind::Block(table) => {
                table.entries.iter().map(|(k, f)| (k.clone(), f.value.clone())).collect()
            }
            _ => vec![],
        }
    }

    #[test]
    fn same_component_merges_key_by_key() {
        let mut old = comp("transformer", &[("depth", int(12)), ("width", int(384))]);
        merge_value(&mut old, comp("transformer", &[("depth", int(4))]));
        assert_eq!(keys(&old), vec![("depth".into(), int(4)), ("width".into(), int(384))]);
    }

    #[test]
    fn different_component_replaces_whole() {
        let mut old = comp("transformer", &[("depth", int(12))]);
        merge_value(&mut old, comp("unet", &[("channels", int(64))]));
        assert!(matches!(&old.kind, ValueKind::Component { name, .. } if name == "unet"));
        assert_eq!(keys(&old), vec![("channels".into(), int(64))]);
    }

    #[test]
    fn bare_name_of_same_component_keeps_keys() {
        let mut old = comp("adamw", &[("lr", int(1))]);
        merge_value(&mut old, Value::new(ValueKind::Name("adamw".into()), Span::default()));
        assert_eq!(keys(&old), vec![("lr".into(), int(1))]);
        merge_value(&mut old, Value::new(ValueKind::Name("sgd".into()), Span::default()));
        assert_eq!(old.kind, ValueKind::Name("sgd".into()));
    }

    #[test]
    fn blocks_merge_and_scalars_replace() {
        let mut old = Value::new(ValueKind::Block(Table::default()), Span::default());
        if let ValueKind::Block(t) = &mut old.kind {
            t.insert("steps", field(int(1)));
            t.insert("batch", field(int(2)));
        }
        let mut new = Table::default();
        new.insert("steps", field(int(10)));
        merge_value(&mut old, Value::new(ValueKind::Block(new), Span::default()));
        assert_eq!(keys(&old), vec![("batch".into(), int(2)), ("steps".into(), int(10))]);
        let mut scalar = int(1);
        merge_value(&mut scalar, int(2));
        assert_eq!(scalar, int(2));
    }

    #[test]
    fn paths_enter_blocks_and_components_but_not_scalars() {
        let mut t = Table::default();
        t.insert("opt", field(comp("adamw", &[])));
        t.insert("seed", field(int(1)));
        let s = Span::default();
        table_at(&mut t, &[("opt".into(), s)]).unwrap().insert("lr", field(int(3)));
        table_at(&mut t, &[("train".into(), s), ("x".into(), s)]).unwrap();
        assert!(matches!(t.get("train").unwrap().value.kind, ValueKind::Block(_)));
        let err = table_at(&mut t, &[("seed".into(), s)]).unwrap_err();
        assert_eq!((err.segment, err.found), (0, "integer"));
    }
}
