//! TensorBoard event files (`events.out.tfevents.*`) beside `metrics.jsonl`.
//!
//! The format is small and stable: TFRecord framing (length, masked CRC-32C of the length, payload,
//! masked CRC-32C of the payload) around serialized `tensorflow.Event` protocol buffers. sr writes the
//! few fields it needs by hand (wall time, step, file version, session log, scalar and PNG image
//! summaries) instead of pulling in a protobuf code generator; `crc32c` computes the checksums.
//! TensorBoard reads the files directly (`tensorboard --logdir runs`), and `wandb sync` uploads them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Result, RuntimeError};

/// Appends events to one TensorBoard event file.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Creates a new event file in `dir` and writes its version header. A resumed run (`start > 0`)
    /// also records a session restart at `start`, so TensorBoard drops the older files' points from
    /// `start` on instead of drawing both.
    pub fn create(dir: &Path, start: u64) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io(dir, e))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
            .unwrap_or_else(|| "localhost".into());
        let mut n = 0;
        let path = loop {
            let suffix = if n == 0 { String::new() } else { format!(".{n}") };
            let p = dir.join(format!("events.out.tfevents.{now}.{host}.sr{suffix}"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let file = File::create(&path).map_err(|e| RuntimeError::io(&path, e))?;
        let mut w = EventWriter { path, file: BufWriter::new(file) };
        let mut version = Vec::new();
        bytes_field(&mut version, 3, b"brain.Event:2");
        w.write_event(start, &version)?;
        if start > 0 {
            // SessionLog { status: START }
            let mut log = Vec::new();
            bytes_field(&mut log, 6, &[0x08, 0x01]);
            w.write_event(start, &log)?;
        }
        w.flush()?;
        Ok(w)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the scalars `tags_values` at `step` (one event; non-finite values are skipped).
    pub fn scalars<'a>(
        &mut self,
        step: u64,
        tags_values: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, v) in tags_values {
            if !v.is_finite() {
                continue;
            }
            let mut value = Vec::new();
            bytes_field(&mut value, 1, tag.as_bytes());
            key(&mut value, 2, 5);
            value.extend_from_slice(&(v as f32).to_le_bytes());
            bytes_field(&mut summary, 1, &value);
        }
        self.summary(step, &summary)
    }

    /// Records a PNG image under `tag` at `step`.
    pub fn image(
        &mut self,
        step: u64,
        tag: &str,
        png: &[u8],
        height: u32,
        width: u32,
        channels: u32,
    ) -> Result<()> {
        let mut img = Vec::new();
        varint_field(&mut img, 1, height as u64);
        varint_field(&mut img, 2, width as u64);
        varint_field(&mut img, 3, channels as u64);
        bytes_field(&mut img, 4, png);
        let mut value = Vec::new();
        bytes_field(&mut value, 1, tag.as_bytes());
        bytes_field(&mut value, 4, &img);
        let mut summary = Vec::new();
        bytes_field(&mut summary, 1, &value);
        self.summary(step, &summary)
    }

    /// Writes buffered events to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| RuntimeError::io(&self.path, e))
    }

    fn summary(&mut self, step: u64, summary: &[u8]) -> Result<()> {
        let mut what = Vec::new();
        bytes_field(&mut what, 5, summary);
        self.write_event(step, &what)
    }

    /// One `Event { wall_time, step, <what> }` in a TFRecord frame.
    fn write_event(&mut self, step: u64, what: &[u8]) -> Result<()> {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut event = Vec::with_capacity(what.len() + 16);
        key(&mut event, 1, 1);
        event.extend_from_slice(&wall.to_le_bytes());
        varint_field(&mut event, 2, step);
        event.extend_from_slice(what);
        let len = (event.len() as u64).to_le_bytes();
        let mut frame = Vec::with_capacity(event.len() + 16);
        frame.extend_from_slice(&len);
        frame.extend_from_slice(&masked_crc(&len).to_le_bytes());
        frame.extend_from_slice(&event);
        frame.extend_from_slice(&masked_crc(&event).to_le_bytes());
        self.file.write_all(&frame).map_err(|e| RuntimeError::io(&self.path, e))
    }
}

/// TFRecord's masked CRC-32C.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A protobuf field key: field number and wire type (0 varint, 1 fixed64, 2 bytes, 5 fixed32).
fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The event files in `dir`, oldest name first.
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("events.out.tfevents."))
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the TFRecord frames of `bytes`, checking both checksums of each.
    fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len_bytes = &bytes[at..at + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            assert_eq!(u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()), masked_crc(len_bytes));
            let data = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc(data));
            out.push(data.to_vec());
            at += 16 + len;
        }
        out
    }

    #[test]
    fn crc32c_matches_the_known_check_value() {
        // CRC-32C("123456789") = 0xE3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn writes_framed_events_with_version_scalars_and_images() {
        let dir = std::env::temp_dir().join(format!("sr-tb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = EventWriter::create(&dir, 0).unwrap();
        w.scalars(7, [("loss", 0.5), ("skipped", f64::NAN)]).unwrap();
        w.image(7, "samples", b"\x89PNG", 2, 3, 3).unwrap();
        w.flush().unwrap();
        let files = event_files(&dir);
        assert_eq!(files, vec![w.path().to_path_buf()]);
        let events = frames(&std::fs::read(&files[0]).unwrap());
        assert_eq!(events.len(), 3);
        assert!(events[0].ends_with(b"\x1a\x0dbrain.Event:2"));
        // step 7, then summary { value { tag "loss", simple_value 0.5 } } and nothing for NaN.
        let scalar =
            [&[0x10, 7, 0x2a, 0x0d, 0x0a, 0x0b, 0x0a, 0x04][..], b"loss", &[0x15], &0.5f32.to_le_bytes()]
                .concat();
        assert!(events[1].ends_with(&scalar), "{:?}", events[1]);
        assert!(events[2].windows(4).any(|w| w == b"\x89PNG"));
        // A second writer in the same second gets its own file; a resumed one logs a restart.
        let w2 = EventWriter::create(&dir, 40).unwrap();
        assert_ne!(w2.path(), w.path());
        let events = frames(&std::fs::read(w2.path()).unwrap());
        assert!(events[1].ends_with(&[0x10, 40, 0x32, 0x02, 0x08, 0x01]), "{:?}", events[1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
