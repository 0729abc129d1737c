//! Parsing: `.srx` text → [`Module`](ast::Module) with spans, comments and folded constants.

pub mod ast;
mod parser;
mod scan;

pub(crate) use parser::parse_assignment;
pub use parser::{parse, MAX_PATH_LEN, MAX_SOURCE_LEN};
pub use scan::MAX_DEPTH;

/// The offset just past the (nested) block comment starting at byte `start` of `text`, or the end of
/// the text when it is unterminated.
pub fn block_comment_end(text: &str, start: usize) -> usize {
    let b = text.as_bytes();
    let (mut i, mut depth) = (start, 0usize);
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth = depth.saturating_sub(1);
            i += 2;
            if depth == 0 {
                break;
            }
        } else {
            i += 1;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::block_comment_end;

    #[test]
    fn block_comments_nest_and_may_be_unterminated() {
        let text = "a /* x /* y */ z */ b";
        assert_eq!(&text[block_comment_end(text, 2)..], " b");
        assert_eq!(block_comment_end("/* open /* */", 0), 13);
        assert_eq!(block_comment_end("/**/x", 0), 4);
    }
}
