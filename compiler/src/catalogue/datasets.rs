//! Datasets: where raw samples come from, and their shape.

use super::p::{int, optional, required};
use super::{Args, Component, Default, Kind, Output, Param, Rules, Ty, Violation};

const SPLIT: Param = Param::new(
    "split",
    Ty::Str,
    Some(Default::Str("train")),
    "which split to draw from: \"train\" or \"test\"",
);
const COUNT: Param = int("count", 0, "number of samples (0 = an endless stream)").min(0.0);
const SEED: Param = int("seed", 0, "split-specific offset of the random stream").min(0.0);
const GIVENS: Param = Param::new(
    "givens",
    Ty::Range,
    Some(Default::Range(0, 81)),
    "number of given cells, drawn uniformly per puzzle",
)
.min(0.0)
.max(81.0);

/// The splits a generated or loaded dataset knows.
const SPLITS: &[&str] = &["train", "test"];

/// `split` names a known split.
fn known_split(a: Args<'_>) -> Result<(), Violation> {
    match a.word("split") {
        Some(s) if !SPLITS.contains(&s) => Err(Violation::of(
            "split",
            format!("unknown split `{s}`"),
            format!("use one of: {}", SPLITS.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")),
        )),
        _ => Ok(()),
    }
}

const SUDOKU_METRICS: &[&str] = &["sudoku_accuracy", "mse_to_data"];
const ANY_METRICS: &[&str] = &["mse_to_data"];

fn sudoku_shape(_: Args<'_>) -> Result<Vec<usize>, Violation> {
    Ok(vec![9, 9])
}

fn sudoku_image_shape(_: Args<'_>) -> Result<Vec<usize>, Violation> {
    Ok(vec![1, 252, 252])
}

fn mnist_shape(_: Args<'_>) -> Result<Vec<usize>, Violation> {
    Ok(vec![1, 28, 28])
}

fn cifar_shape(_: Args<'_>) -> Result<Vec<usize>, Violation> {
    Ok(vec![3, 32, 32])
}

fn rgb_square(a: Args<'_>) -> Result<Vec<usize>, Violation> {
    let size = a.size("size").ok_or_else(|| Violation::of("size", "missing image size", "set `size`"))?;
    Ok(vec![3, size, size])
}

fn video_shape(a: Args<'_>) -> Result<Vec<usize>, Violation> {
    let frames = a.size("frames").unwrap_or(0);
    let size = a.size("size").unwrap_or(0);
    Ok(vec![frames, 1, size, size])
}

fn points_shape(a: Args<'_>) -> Result<Vec<usize>, Violation> {
    let n = a.size("points").unwrap_or(0);
    let d = a.size("dim").unwrap_or(0);
    Ok(vec![n, d])
}

fn counting_rules(a: Args<'_>) -> Result<Vec<usize>, Violation> {
    if let (Some(lo), Some(hi)) = (a.int("min_count"), a.int("max_count")) {
        if lo > hi {
            return Err(Violation::of(
                "max_count",
                format!("max_count {hi} is below min_count {lo}"),
                "make `max_count` at least `min_count`",
            ));
        }
    }
    if let (Some(lo), Some(hi)) = (a.int("min_vertices"), a.int("max_vertices")) {
        if lo > hi {
            return Err(Violation::of(
                "max_vertices",
                format!("max_vertices {hi} is below min_vertices {lo}"),
                "make `max_vertices` at least `min_vertices`",
            ));
        }
    }
    rgb_square(a)
}

const COUNTING_PARAMS: &[Param] = &[
    int("size", 64, "image side in pixels").min(16.0).max(1024.0),
    int("min_count", 1, "fewest shapes in an image").min(1.0).max(64.0),
    int("max_count", 9, "most shapes in an image").min(1.0).max(64.0),
    int("min_vertices", 3, "fewest vertices (stars: points) of a shape").min(3.0).max(16.0),
    int("max_vertices", 7, "most vertices (stars: points) of a shape").min(3.0).max(16.0),
    COUNT,
    SPLIT,
    SEED,
];

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::Dataset,
        name: "sudoku",
        doc: "symbolic Sudoku puzzles; one sample is a [9, 9] grid of digits 1..9",
        params: &[SPLIT, GIVENS, COUNT, SEED],
        rules: Rules::Dataset { shape: sudoku_shape, metrics: SUDOKU_METRICS, output: Output::Sudoku },
        consistent: Some(known_split),
    },
    Component {
        kind: Kind::Dataset,
        name: "sudoku_image",
        doc: "Sudoku puzzles drawn as 28×28 digit glyphs; one sample is a [1, 252, 252] image",
        params: &[
            SPLIT,
            GIVENS,
            COUNT,
            SEED,
            optional(
                "mnist",
                Ty::Path,
                "directory of MNIST IDX files for the glyphs (none = built-in glyphs)",
            ),
            int("jitter", 2, "random shift of each glyph in pixels").min(0.0).max(8.0),
        ],
        rules: Rules::Dataset { shape: sudoku_image_shape, metrics: SUDOKU_METRICS, output: Output::Image },
        consistent: Some(known_split),
    },
    Component {
        kind: Kind::Dataset,
        name: "even_pixels",
        doc: "square RGB images of two opposite hues, exactly half the pixels each",
        params: &[
            int("size", 32, "image side in pixels").min(2.0).max(1024.0),
            Param::new("saturation", Ty::Float, Some(Default::Float(1.0)), "HSV saturation of both hues")
                .min(0.0)
                .max(1.0),
            Param::new("value", Ty::Float, Some(Default::Float(0.7)), "HSV value of both hues")
                .min(0.0)
                .max(1.0),
            COUNT,
            SPLIT,
            SEED,
        ],
        rules: Rules::Dataset {
            shape: rgb_square,
            metrics: &["even_pixels_balance", "mse_to_data"],
            output: Output::Image,
        },
        consistent: Some(known_split),
    },
    Component {
        kind: Kind::Dataset,
        name: "counting_polygons",
        doc: "polygons on a blank background; the count and vertex numbers must agree",
        params: COUNTING_PARAMS,
        rules: Rules::Dataset {
            shape: counting_rules,
            metrics: &["counting_consistency", "mse_to_data"],
            output: Output::Image,
        },
        consistent: Some(known_split),
    },
    Component {
        kind: Kind::Dataset,
        name: "counting_stars",
        doc: "stars on a blank background; the count and point numbers must agree",
        params: COUNTING_PARAMS,
        rules: Rules::Dataset {
            shape: counting_rules,
            metrics: &["counting_consistency", "mse_to_data"],
            output: Output::Image,
        },
        consistent: Some(known_split),
    },
    Component {
        kind: Kind::Dataset,
        name: "moving_shapes",
        doc: "videos of shapes moving on straight lines; one sample is [frames, 1, size, size]",
        params: &[
            int("frames", 8, "frames per video").min(1.0).max(256.0),
            int("size", 32, "frame side in pixels").min(8.0).max(512.0),
            int("shapes", 2, "shapes per video").min(1.0).max(16.0),
            COUNT,
            SPLIT,
            SEED,
        ],
        rules: Rules::Dataset {
            shape: video_shape,
            metrics: &["frame_consistency", "mse_to_data"],
            output: Output::Video,
        },
        consistent: Some(known_split),
    },
    Component {
        kind: Kind::Dataset,
        name: "mnist",
        doc: "MNIST digits from IDX files; one sample is a [1, 28, 28] image",
        params: &[
            Param::new("path", Ty::Path, Some(Default::Str("data/mnist")), "directory holding the IDX files"),
            SPLIT,
        ],
        rules: Rules::Dataset { shape: mnist_shape, metrics: ANY_METRICS, output: Output::Image },
        consistent: Some(known_split),
    },
    Component {
        kind: Kind::Dataset,
        name: "cifar10",
        doc: "CIFAR-10 binary batches; one sample is a [3, 32, 32] image",
        params: &[
            Param::new(
                "path",
                Ty::Path,
                Some(Default::Str("data/cifar10")),
                "directory holding the binary batches",
            ),
            SPLIT,
        ],
        rules: Rules::Dataset { shape: cifar_shape, metrics: ANY_METRICS, output: Output::Image },
        consistent: Some(known_split),
    },
    Component {
        kind: Kind::Dataset,
        name: "image_folder",
        doc: "PNG/JPEG images under a directory, resized to a square",
        params: &[
            required("path", Ty::Path, "directory searched recursively for images"),
            int("size", 64, "side the images are resized to").min(2.0).max(1024.0),
        ],
        rules: Rules::Dataset { shape: rgb_square, metrics: ANY_METRICS, output: Output::Image },
        consistent: None,
    },
    Component {
        kind: Kind::Dataset,
        name: "points",
        doc: "point sets of shape [points, dim] from a .npy, .npz or .safetensors file",
        params: &[
            required("path", Ty::Path, "the .npy, .npz or .safetensors file"),
            Param::new(
                "key",
                Ty::Str,
                Some(Default::Str("points")),
                "array name inside a .npz or tensor name inside a .safetensors file",
            ),
            required("points", Ty::Int, "points per sample N (checked against the file at load time)")
                .min(1.0),
            required("dim", Ty::Int, "coordinates per point D (checked against the file at load time)")
                .min(1.0),
        ],
        rules: Rules::Dataset { shape: points_shape, metrics: ANY_METRICS, output: Output::Points },
        consistent: None,
    },
];
