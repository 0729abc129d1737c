//! The plan: the only contract between the compiler and the runtime.
//!
//! A petgraph graph of typed nodes (one per component instance) with every parameter resolved
//! and defaults filled in, plus the inferred shapes. Serialisable with serde (`sr compile`).

use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// What role a component plays in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dataset,
    Mapper,
    Flow,
    TimeSampler,
    Tokenizer,
    Denoiser,
    Loss,
    Optimizer,
    LrSchedule,
    Schedule,
    Sampler,
    Metric,
}

impl Kind {
    /// Every kind, in pipeline order.
    pub const ALL: [Kind; 12] = [
        Kind::Dataset,
        Kind::Mapper,
        Kind::Flow,
        Kind::TimeSampler,
        Kind::Tokenizer,
        Kind::Denoiser,
        Kind::Loss,
        Kind::Optimizer,
        Kind::LrSchedule,
        Kind::Schedule,
        Kind::Sampler,
        Kind::Metric,
    ];

    /// The kind's name as written in docs and messages (`dataset`, `time_sampler`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dataset => "dataset",
            Kind::Mapper => "mapper",
            Kind::Flow => "flow",
            Kind::TimeSampler => "time_sampler",
            Kind::Tokenizer => "tokenizer",
            Kind::Denoiser => "denoiser",
            Kind::Loss => "loss",
            Kind::Optimizer => "optimizer",
            Kind::LrSchedule => "lr_schedule",
            Kind::Schedule => "schedule",
            Kind::Sampler => "sampler",
            Kind::Metric => "metric",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Kind::from_str`]: the word is not a kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown component kind `{0}`")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// A fully resolved parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Range {
        lo: i64,
        hi: i64,
    },
    List(Vec<PValue>),
    /// A weighted sum of terms (loss mixtures).
    Sum(Vec<(f64, String)>),
    /// A reference to another node by id (a nested component, a dataset split, a sampler).
    Node {
        node: String,
    },
}

/// One component instance. `id` is its path in the experiment: `data.train`, `mapper`, `flow`,
/// `denoiser`, `train.optimizer`, `train.time`, `sampler.adaptive`, `sampler.adaptive.schedule`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub kind: Kind,
    /// Catalogue entry name (`rectified`, `transformer`, ...).
    pub component: String,
    pub params: BTreeMap<String, PValue>,
}

/// What flows along an edge: the shape of the tensor passed, in words (`[B, 81, 9]`), or a role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub label: String,
}

/// Shapes inferred by the checker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Shapes {
    /// Shape of one raw sample from the datasets (e.g. `[3, 32, 32]` or `[9, 9]`).
    pub raw: Vec<usize>,
    /// Number of variables V.
    pub variables: usize,
    /// Features per variable F.
    pub features: usize,
}

/// A compiled experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub experiment: String,
    pub seed: u64,
    /// The experiment's `device` (`cpu`, `cuda`, `cuda:N`); the command line can override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub shapes: Shapes,
    /// Training settings of the `train` block that are not components (steps, batch, ema, clip, ...).
    pub train: BTreeMap<String, PValue>,
    pub graph: DiGraph<Node, Edge>,
}

impl Plan {
    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.graph.node_weights().find(|n| n.id == id)
    }

    /// The index of the node with this id.
    pub fn index(&self, id: &str) -> Option<NodeIndex> {
        self.graph.node_indices().find(|&i| self.graph[i].id == id)
    }

    /// All nodes of one kind, in insertion order.
    pub fn nodes_of(&self, kind: Kind) -> impl Iterator<Item = &Node> {
        self.graph.node_weights().filter(move |n| n.kind == kind)
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The plan as a Graphviz digraph: one box per node (id and component), edges labelled with what
/// flows along them. Deterministic: nodes and edges in insertion order.
pub fn to_dot(plan: &Plan) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&plan.experiment));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, fontname=\"monospace\"];");
    for idx in plan.graph.node_indices() {
        let n = &plan.graph[idx];
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{} {}\"];",
            dot_escape(&n.id),
            dot_escape(&n.id),
            n.kind.as_str(),
            dot_escape(&n.component)
        );
    }
    for e in plan.graph.edge_indices() {
        if let Some((a, b)) = plan.graph.edge_endpoints(e) {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [label=\"{}\"];",
                dot_escape(&plan.graph[a].id),
                dot_escape(&plan.graph[b].id),
                dot_escape(&plan.graph[e].label)
            );
        }
    }
    out.push_str("}\n");
    out
}
