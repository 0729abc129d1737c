//! Building the [`Plan`] graph from a checked experiment.

use super::fields::{Fields, Inst};
use super::rules::dims;
use super::Checked;
use crate::catalogue::{Input, Kind, Rules};
use crate::plan::{Edge, Node, PValue, Plan};
use crate::value::Experiment;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, HashMap};

struct Builder {
    graph: DiGraph<Node, Edge>,
    ids: HashMap<String, NodeIndex>,
}

impl Builder {
    fn node(&mut self, id: &str, kind: Kind, component: &str, params: BTreeMap<String, PValue>) -> NodeIndex {
        let idx =
            self.graph.add_node(Node { id: id.to_string(), kind, component: component.to_string(), params });
        self.ids.insert(id.to_string(), idx);
        idx
    }

    /// Adds an instance and, first, its nested components (`id.key`), linked to it.
    fn inst(&mut self, id: &str, inst: &Inst) -> NodeIndex {
        let mut params = inst.fields.values.clone();
        let mut children = Vec::new();
        for (key, child) in &inst.fields.children {
            let child_id = format!("{id}.{key}");
            children.push((self.inst(&child_id, child), key.clone()));
            params.insert(key.clone(), PValue::Node { node: child_id });
        }
        let idx = self.node(id, inst.comp.kind, inst.comp.name, params);
        for (child, key) in children {
            self.edge(child, idx, &key);
        }
        idx
    }

    fn edge(&mut self, from: NodeIndex, to: NodeIndex, label: &str) {
        self.graph.add_edge(from, to, Edge { label: label.to_string() });
    }
}

/// The non-component keys of the `train` block, with defaults.
fn train_settings(train: &Fields) -> BTreeMap<String, PValue> {
    train.values.clone()
}

pub(super) fn plan(exp: &Experiment, ck: &Checked) -> Option<Plan> {
    let shapes = ck.shapes.clone()?;
    let (mapper, flow, tokenizer, denoiser) =
        (ck.mapper.as_ref()?, ck.flow.as_ref()?, ck.tokenizer.as_ref()?, ck.denoiser.as_ref()?);
    let (v, f) = (shapes.variables, shapes.features);
    let x = format!("[B, {v}, {f}]");
    let t = format!("t [B, {v}]");
    let sigma = denoiser.fields.values.get("uncertainty") == Some(&PValue::Bool(true));
    let predict = match flow.fields.values.get("predict") {
        Some(PValue::Str(p)) => p.clone(),
        _ => "prediction".to_string(),
    };
    let mut b = Builder { graph: DiGraph::new(), ids: HashMap::new() };

    let mut data = BTreeMap::new();
    for d in &ck.data {
        data.insert(d.name.clone(), b.inst(&format!("data.{}", d.name), &d.inst));
    }
    let m = b.inst("mapper", mapper);
    let raw = format!("[B, {}]", dims(&shapes.raw).trim_start_matches('[').trim_end_matches(']'));
    for d in &ck.data {
        if let Some(&idx) = data.get(&d.name) {
            b.edge(idx, m, &raw);
        }
    }
    let fl = b.inst("flow", flow);
    b.edge(m, fl, &format!("x {x}"));
    let time = ck.train.as_ref().and_then(|(t, _)| t.children.get("time")).map(|i| b.inst("train.time", i));
    if let Some(time) = time {
        b.edge(time, fl, &t);
    }
    let tok = b.inst("tokenizer", tokenizer);
    b.edge(fl, tok, &format!("z {x}"));
    if let Some(time) = time {
        b.edge(time, tok, &t);
    }
    let den = b.inst("denoiser", denoiser);
    let tok_label = match tokenizer.comp.rules {
        Rules::Tokenizer { produces: Input::Image, .. } => match shapes.raw.as_slice() {
            [c, h, w] => format!("image [B, {}, {h}, {w}]", c + 1),
            _ => "image".to_string(),
        },
        Rules::Tokenizer { produces: Input::Frames, .. } => match shapes.raw.as_slice() {
            [fr, c, h, w] => format!("frames [B, {fr}, {c}, {h}, {w}] + t [B, {fr}]"),
            _ => "frames".to_string(),
        },
        _ => format!("tokens {x} + {t}"),
    };
    b.edge(tok, den, &tok_label);

    if let Some((train, _)) = &ck.train {
        let mut losses = Vec::new();
        for term in train.mixtures.get("loss").into_iter().flatten() {
            let params = BTreeMap::from([("weight".to_string(), PValue::Float(term.weight))]);
            let idx = b.node(&format!("loss.{}", term.comp.name), Kind::Loss, term.comp.name, params);
            if term.comp.needs_sigma() {
                b.edge(den, idx, &format!("{predict} {x}, σ [B, {v}]"));
            } else {
                b.edge(den, idx, &format!("{predict} {x}"));
            }
            b.edge(fl, idx, &format!("target {x}"));
            if let Some(time) = time {
                b.edge(time, idx, &format!("w [B, {v}]"));
            }
            losses.push(idx);
        }
        let opt = train.children.get("optimizer").map(|i| b.inst("train.optimizer", i));
        let lr = train.children.get("lr_schedule").map(|i| b.inst("train.lr_schedule", i));
        if let Some(opt) = opt {
            for &l in &losses {
                b.edge(l, opt, "loss");
            }
            if let Some(lr) = lr {
                b.edge(lr, opt, "lr");
            }
            b.edge(opt, den, "weights");
        }
    }

    let mut samplers = BTreeMap::new();
    for s in &ck.samplers {
        let id = format!("sampler.{}", s.name);
        let idx = b.inst(&id, &s.inst);
        b.edge(den, idx, &format!("{predict} {x}"));
        if sigma {
            if let Some(&sched) = b.ids.get(&format!("{id}.schedule")) {
                b.edge(den, sched, &format!("σ [B, {v}]"));
            }
        }
        b.edge(fl, idx, "reverse step");
        samplers.insert(s.name.clone(), idx);
    }
    for e in &ck.evals {
        let id = format!("evaluate.{}.{}", e.metric.name, e.split);
        if b.ids.contains_key(&id) {
            continue;
        }
        let with: Vec<PValue> =
            e.with.iter().map(|(n, _)| PValue::Node { node: format!("sampler.{n}") }).collect();
        let params = BTreeMap::from([
            ("on".to_string(), PValue::Node { node: format!("data.{}", e.split) }),
            ("with".to_string(), PValue::List(with)),
        ]);
        let idx = b.node(&id, Kind::Metric, e.metric.name, params);
        if let Some(&d) = data.get(&e.split) {
            b.edge(d, idx, "reference");
        }
        for (n, _) in &e.with {
            if let Some(&s) = samplers.get(n) {
                b.edge(s, idx, &format!("samples {x}"));
            }
        }
    }

    Some(Plan {
        experiment: exp.name.clone(),
        seed: ck.seed,
        device: ck.device.clone(),
        shapes,
        train: ck.train.as_ref().map(|(t, _)| train_settings(t)).unwrap_or_default(),
        graph: b.graph,
    })
}
