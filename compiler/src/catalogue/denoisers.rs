//! Denoisers: the networks, with their width and shape constraints.

use super::p::{boolean, float, int, required, word};
use super::{Args, Component, Default, Input, Kind, Param, Rules, ShapeCtx, Ty, Violation};

const UNCERTAINTY: Param = boolean("uncertainty", false, "also predict a per-variable log-variance (σ)");

fn even_time_dim(a: Args<'_>) -> Result<(), Violation> {
    match a.int("time_dim") {
        Some(d) if d % 2 != 0 => Err(Violation::of(
            "time_dim",
            format!("time_dim {d} is odd; the sinusoidal time embedding needs an even size"),
            format!("use {} or {}", d - 1, d + 1),
        )),
        _ => Ok(()),
    }
}

fn heads_divide_width(a: Args<'_>) -> Result<(), Violation> {
    if let (Some(w), Some(h)) = (a.int("width"), a.int("heads")) {
        if h > 0 && w % h != 0 {
            let near: Vec<String> = (1..=h.max(16)).filter(|d| w % d == 0).map(|d| d.to_string()).collect();
            return Err(Violation::of(
                "heads",
                format!("{h} heads do not divide the width {w}"),
                format!("`width % heads` must be 0; heads that divide {w}: {}", near.join(", ")),
            ));
        }
    }
    Ok(())
}

fn mlp_fit(a: Args<'_>, _: ShapeCtx<'_>) -> Result<(), Violation> {
    even_time_dim(a)
}

fn transformer_fit(a: Args<'_>, _: ShapeCtx<'_>) -> Result<(), Violation> {
    heads_divide_width(a)?;
    even_time_dim(a)
}

fn block_causal_fit(a: Args<'_>, s: ShapeCtx<'_>) -> Result<(), Violation> {
    transformer_fit(a, s)?;
    if let Some(b) = a.size("block") {
        if b > 0 && !s.variables.is_multiple_of(b) {
            let divisors: Vec<String> =
                (1..=s.variables).filter(|d| s.variables.is_multiple_of(*d)).map(|d| d.to_string()).collect();
            return Err(Violation::of(
                "block",
                format!("block {b} does not divide the {} variables", s.variables),
                format!("choose a block that divides {}: {}", s.variables, divisors.join(", ")),
            ));
        }
    }
    Ok(())
}

fn unet_fit(a: Args<'_>, s: ShapeCtx<'_>) -> Result<(), Violation> {
    even_time_dim(a)?;
    let levels = a.ints("mults").map_or(0, |m| m.len());
    if levels == 0 {
        return Err(Violation::of(
            "mults",
            "the U-Net needs at least one level",
            "use e.g. `mults = [1, 2, 2]`",
        ));
    }
    if let Some(attn) = a.ints("attention") {
        if let Some(bad) = attn.iter().find(|&&l| l < 0 || l as usize >= levels) {
            return Err(Violation::of(
                "attention",
                format!("attention level {bad} does not exist; the U-Net has levels 0..{}", levels - 1),
                "list levels below the number of `mults`",
            ));
        }
    }
    if let [_, h, w] = s.raw {
        let factor = 1usize << (levels - 1).min(20);
        for side in [h, w] {
            if side % factor != 0 {
                return Err(Violation::of(
                    "mults",
                    format!("{} levels halve the image {} times, but its side {side} is not divisible by {factor}", levels, levels - 1),
                    "use fewer levels in `mults` or an image side divisible by 2^(levels − 1)",
                ));
            }
        }
    }
    Ok(())
}

fn uvit_fit(a: Args<'_>, s: ShapeCtx<'_>) -> Result<(), Violation> {
    heads_divide_width(a)?;
    if let ([_, _, h, w], Some(p)) = (s.raw, a.size("patch")) {
        for side in [h, w] {
            if p > 0 && side % p != 0 {
                return Err(Violation::of(
                    "patch",
                    format!("patch {p} does not divide the frame side {side}"),
                    format!("choose a patch that divides {side}"),
                ));
            }
        }
    }
    Ok(())
}

const TRANSFORMER: [Param; 9] = [
    int("width", 384, "hidden size of every token").min(8.0).max(8192.0),
    int("depth", 12, "number of transformer blocks").min(1.0).max(128.0),
    int("heads", 6, "attention heads; must divide `width`").min(1.0).max(128.0),
    float("mlp_ratio", 4.0, "hidden size of the feed-forward layer relative to `width`").min(0.25).max(16.0),
    int("time_dim", 256, "size of the sinusoidal time embedding").min(2.0).max(4096.0),
    UNCERTAINTY,
    word(
        "attention",
        &["full", "dependency"],
        "full",
        "which tokens attend to each other: all, or only the variables each one depends on \
         (the mapper's dependency matrix, e.g. row, column and box for Sudoku)",
    ),
    int("loops", 1, "times the block stack is applied, with shared weights (recurrent depth)")
        .min(1.0)
        .max(64.0),
    boolean("reinject", true, "add the input embedding again before every loop after the first"),
];

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::Denoiser,
        name: "mlp",
        doc: "a residual MLP applied per token, with time conditioning",
        params: &[
            int("width", 256, "hidden size").min(8.0).max(8192.0),
            int("depth", 3, "number of residual blocks").min(1.0).max(64.0),
            int("time_dim", 64, "size of the sinusoidal time embedding").min(2.0).max(4096.0),
            UNCERTAINTY,
        ],
        rules: Rules::Denoiser { input: Input::Tokens, fit: mlp_fit },
        consistent: None,
    },
    Component {
        kind: Kind::Denoiser,
        name: "transformer",
        doc: "a DiT: transformer blocks with adaLN-Zero and a time per token",
        params: &TRANSFORMER,
        rules: Rules::Denoiser { input: Input::Tokens, fit: transformer_fit },
        consistent: None,
    },
    Component {
        kind: Kind::Denoiser,
        name: "block_causal_transformer",
        doc: "a DiT whose attention is causal between blocks of variables",
        params: &[
            TRANSFORMER[0],
            TRANSFORMER[1],
            TRANSFORMER[2],
            TRANSFORMER[3],
            TRANSFORMER[4],
            TRANSFORMER[5],
            TRANSFORMER[6],
            TRANSFORMER[7],
            TRANSFORMER[8],
            required("block", Ty::Int, "variables per causal block; must divide V").min(1.0),
        ],
        rules: Rules::Denoiser { input: Input::Tokens, fit: block_causal_fit },
        consistent: None,
    },
    Component {
        kind: Kind::Denoiser,
        name: "unet",
        doc: "a U-Net on the image with a per-pixel time map",
        params: &[
            int("channels", 64, "channels of the first level").min(1.0).max(4096.0),
            Param::new(
                "mults",
                Ty::IntList,
                Some(Default::IntList(&[1, 2, 2])),
                "channel multiplier per level",
            )
            .min(1.0)
            .max(64.0),
            int("blocks", 2, "residual blocks per level").min(1.0).max(16.0),
            Param::new(
                "attention",
                Ty::IntList,
                Some(Default::IntList(&[1, 2])),
                "levels with self-attention",
            )
            .min(0.0)
            .max(16.0),
            int("time_dim", 256, "size of the sinusoidal time embedding").min(2.0).max(4096.0),
            UNCERTAINTY,
        ],
        rules: Rules::Denoiser { input: Input::Image, fit: unet_fit },
        consistent: None,
    },
    Component {
        kind: Kind::Denoiser,
        name: "uvit",
        doc: "a video U-ViT: frames patchified into tokens, long skip connections",
        params: &[
            int("width", 256, "hidden size of every token").min(8.0).max(8192.0),
            int("depth", 6, "number of transformer blocks (odd numbers get a middle block)")
                .min(1.0)
                .max(128.0),
            int("heads", 4, "attention heads; must divide `width`").min(1.0).max(128.0),
            int("patch", 4, "patch side inside a frame; must divide the frame side").min(1.0).max(256.0),
            UNCERTAINTY,
        ],
        rules: Rules::Denoiser { input: Input::Frames, fit: uvit_fit },
        consistent: None,
    },
];
