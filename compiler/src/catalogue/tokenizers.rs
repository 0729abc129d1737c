//! Tokenizers: `(z, t)` → what the denoiser consumes.

use super::{Component, Input, Kind, Rules};

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::Tokenizer,
        name: "tokens",
        doc: "variables → tokens [B, V, F] with a per-token time (transformers, MLP)",
        params: &[],
        rules: Rules::Tokenizer { produces: Input::Tokens, raw_rank: None },
        consistent: None,
    },
    Component {
        kind: Kind::Tokenizer,
        name: "time_map",
        doc: "variables → image [B, C, H, W] with a per-pixel time map as an extra channel (U-Net)",
        params: &[],
        rules: Rules::Tokenizer { produces: Input::Image, raw_rank: Some(3) },
        consistent: None,
    },
    Component {
        kind: Kind::Tokenizer,
        name: "frames",
        doc: "video variables → frames [B, T, C, H, W] with a per-frame time (U-ViT)",
        params: &[],
        rules: Rules::Tokenizer { produces: Input::Frames, raw_rank: Some(4) },
        consistent: None,
    },
];
