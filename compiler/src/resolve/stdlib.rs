//! The standard library: `.srx` modules embedded in the binary, imported as `std.<name>`.

/// Every standard-library module: its name (after `std.`) and its text.
pub const MODULES: &[(&str, &str)] = &[
    ("cifar10", include_str!("../../../stdlib/cifar10.srx")),
    ("counting", include_str!("../../../stdlib/counting.srx")),
    ("denoisers", include_str!("../../../stdlib/denoisers.srx")),
    ("even_pixels", include_str!("../../../stdlib/even_pixels.srx")),
    ("mappers", include_str!("../../../stdlib/mappers.srx")),
    ("mnist", include_str!("../../../stdlib/mnist.srx")),
    ("samplers", include_str!("../../../stdlib/samplers.srx")),
    ("sudoku", include_str!("../../../stdlib/sudoku.srx")),
    ("video", include_str!("../../../stdlib/video.srx")),
];

/// The text of `std.<name>`.
pub fn module(name: &str) -> Option<&'static str> {
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The file name a standard-library module is shown under.
pub fn file_name(name: &str) -> String {
    format!("std/{name}.srx")
}
