//! Mappers: raw sample ↔ variables `[V, F]`, and the dependency between variables.

use super::p::{int, required};
use super::{Args, Component, Kind, Rules, Ty, Violation};

fn shape_str(raw: &[usize]) -> String {
    let dims: Vec<String> = raw.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(", "))
}

fn grid_cells(_: Args<'_>, raw: &[usize]) -> Result<(usize, usize), Violation> {
    match raw {
        [9, 9] => Ok((81, 9)),
        [c, h, w] if h == w && h % 9 == 0 && *h > 0 => Ok((81, c * (h / 9) * (w / 9))),
        _ => Err(Violation::whole(
            format!(
                "grid_cells expects a [9, 9] grid or a square image with a side divisible by 9, got {}",
                shape_str(raw)
            ),
            "use grid_cells with the `sudoku` or `sudoku_image` datasets",
        )),
    }
}

fn image_patches(a: Args<'_>, raw: &[usize]) -> Result<(usize, usize), Violation> {
    let [c, h, w] = raw else {
        return Err(Violation::whole(
            format!("image_patches expects an image [C, H, W], got {}", shape_str(raw)),
            "use image_patches with an image dataset, video_frames for video, identity for point sets",
        ));
    };
    let patch = a.size("patch").unwrap_or(1).max(1);
    for (side, what) in [(h, "height"), (w, "width")] {
        if side % patch != 0 {
            let divisors: Vec<String> =
                (1..=*side).filter(|d| side % d == 0 && *d <= 16).map(|d| d.to_string()).collect();
            return Err(Violation::of(
                "patch",
                format!("patch {patch} does not divide the image {what} {side}"),
                format!("choose a patch that divides {side}: {}", divisors.join(", ")),
            ));
        }
    }
    Ok(((h / patch) * (w / patch), c * patch * patch))
}

fn video_frames(_: Args<'_>, raw: &[usize]) -> Result<(usize, usize), Violation> {
    match raw {
        [t, c, h, w] => Ok((*t, c * h * w)),
        _ => Err(Violation::whole(
            format!("video_frames expects video [T, C, H, W], got {}", shape_str(raw)),
            "use video_frames with a video dataset such as `moving_shapes`",
        )),
    }
}

fn identity(_: Args<'_>, raw: &[usize]) -> Result<(usize, usize), Violation> {
    match raw {
        [n, d] => Ok((*n, *d)),
        _ => Err(Violation::whole(
            format!("identity expects point sets [N, D], got {}", shape_str(raw)),
            "use identity with the `points` dataset, image_patches for images",
        )),
    }
}

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::Mapper,
        name: "grid_cells",
        doc: "a 9×9 grid → 81 variables (one-hot digits or glyph pixels); dependency = row, column, box",
        params: &[],
        rules: Rules::Mapper { map: grid_cells },
        consistent: None,
    },
    Component {
        kind: Kind::Mapper,
        name: "image_patches",
        doc: "an image [C, H, W] → (H/p)(W/p) patches of C·p·p features; dependency = spatial neighbours",
        params: &[
            required("patch", Ty::Int, "patch side in pixels; must divide the image height and width")
                .min(1.0)
                .max(256.0),
            int("radius", 1, "neighbour distance (in patches) counted as dependent").min(0.0).max(64.0),
        ],
        rules: Rules::Mapper { map: image_patches },
        consistent: None,
    },
    Component {
        kind: Kind::Mapper,
        name: "video_frames",
        doc: "video [T, C, H, W] → T frame variables of C·H·W features; dependency = nearby frames",
        params: &[int("radius", 1, "frame distance counted as dependent").min(0.0).max(256.0)],
        rules: Rules::Mapper { map: video_frames },
        consistent: None,
    },
    Component {
        kind: Kind::Mapper,
        name: "identity",
        doc: "point sets [N, D] → N variables of D features; every variable depends on every other",
        params: &[],
        rules: Rules::Mapper { map: identity },
        consistent: None,
    },
];
