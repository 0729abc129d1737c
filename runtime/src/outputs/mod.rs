//! What a run writes and shows: loss plots, images and animations, `sr sample`'s files per dataset,
//! progress bars and TensorBoard event files.

pub mod image_io;
pub mod plot;
pub mod progress;
pub mod samples;
pub mod tensorboard;
