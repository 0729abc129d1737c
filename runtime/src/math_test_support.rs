//! Test helpers: locating and reading the golden reference vectors in `shared/reference`.

use std::path::PathBuf;

use serde_json::Value;

/// The reference folder: `$SR_REFERENCE`, else the first `shared/reference` found walking up
/// from the crate directory. Panics with a clear message if neither exists.
pub fn reference_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SR_REFERENCE") {
        let p = PathBuf::from(dir);
        assert!(p.is_dir(), "SR_REFERENCE={} is not a directory", p.display());
        return p;
    }
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in start.ancestors() {
        let candidate = dir.join("shared").join("reference");
        if candidate.is_dir() {
            return candidate;
        }
    }
    panic!(
        "reference vectors not found: set SR_REFERENCE or place shared/reference in an ancestor of {}",
        start.display()
    );
}

/// Parsed JSON of one reference file.
pub fn load(name: &str) -> Value {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read reference file {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

/// Cases of `kind` in a reference file.
pub fn cases<'a>(file: &'a Value, kind: &str) -> Vec<&'a Value> {
    let all = file["cases"].as_array().expect("reference file without cases");
    let out: Vec<&Value> = all.iter().filter(|c| c["kind"] == kind).collect();
    assert!(!out.is_empty(), "no cases of kind {kind}");
    out
}

/// A number (non-finite values are the strings "inf", "-inf", "nan").
pub fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("number"),
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "nan" => f64::NAN,
            other => panic!("not a number: {other}"),
        },
        other => panic!("not a number: {other}"),
    }
}

/// A (nested) array flattened row-major.
pub fn flat(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            other => out.push(num(other)),
        }
    }
    walk(v, &mut out);
    out
}

/// Rows of a 2-D array.
pub fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().expect("2-D array").iter().map(flat).collect()
}

/// Whether `got` matches `want` within relative `rel` with absolute floor `abs`.
pub fn close(got: f64, want: f64, rel: f64, abs: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return want == got;
    }
    (got - want).abs() <= abs.max(rel * want.abs())
}

/// Asserts element-wise closeness with a context label.
pub fn assert_close(label: &str, got: &[f64], want: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(close(*g, *w, rel, abs), "{label}[{i}]: got {g}, want {w}");
    }
}

/// Builds the sr flow for a reference case's upstream `flow` name and `config`, going through
/// the public sr constructor (sr parameter names).
pub fn flow_for(name: &str, config: &Value) -> crate::flows::Flow {
    use sr_compiler::plan::PValue;
    use std::collections::BTreeMap;
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: &Value| {
        let pv = match v {
            Value::Number(n) if n.is_i64() => PValue::Int(n.as_i64().unwrap_or_default()),
            Value::String(s) => PValue::Str(s.clone()),
            other => PValue::Float(num(other)),
        };
        p.insert(k.to_string(), pv);
    };
    let sr_name = match name {
        "rectified" => "rectified",
        "cosine" => {
            put("skew", &config["skew"]);
            "cosine"
        }
        "continuous_cosine_logsnr" => {
            put("logsnr_min", &config["logsnr_min"]);
            put("logsnr_max", &config["logsnr_max"]);
            put("shift", &config["shift_factor"]);
            "cosine_logsnr"
        }
        "continuous_linear_beta" => {
            put("beta_min", &config["beta_min"]);
            put("beta_max", &config["beta_max"]);
            "linear_beta"
        }
        "diffusion" => {
            put("steps", &config["num_timesteps"]);
            let bs = &config["beta_schedule"];
            match bs["name"].as_str() {
                Some("cosine") => {
                    put("betas", &Value::String("cosine".into()));
                    put("max_beta", &bs["max_beta"]);
                    put("skew", &bs["skew"]);
                }
                Some("linear") => {
                    put("betas", &Value::String("linear".into()));
                    put("beta_start", &bs["start"]);
                    put("beta_end", &bs["end"]);
                }
                Some("cosine_simple_diffusion") => {
                    put("betas", &Value::String("cosine_logsnr".into()));
                    put("logsnr_min", &bs["logsnr_min"]);
                    put("logsnr_max", &bs["logsnr_max"]);
                    put("shift", &bs["shifted"]);
                }
                other => panic!("unknown beta schedule {other:?}"),
            }
            "diffusion"
        }
        other => panic!("unknown reference flow {other}"),
    };
    let comp = sr_compiler::catalogue::lookup(sr_compiler::catalogue::Kind::Flow, sr_name).expect("a flow");
    let mut params = comp.default_params();
    params.extend(p);
    crate::registry::Registry::get().build_flow(sr_name, &params).expect("reference flow config").flow
}
