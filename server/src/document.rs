//! An open document: its text (a rope), version, language and the negotiated position encoding.
//!
//! Every conversion between LSP positions and text offsets lives here. Positions are clamped:
//! a line past the end means the end of the document, a character past the end of its line means
//! the end of that line, and a position inside a UTF-16 surrogate pair or a UTF-8 sequence snaps to
//! the start of that character. Nothing here panics on client input.

use ropey::Rope;

/// How the client counts characters in a line (`positionEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    Utf8,
    #[default]
    Utf16,
    Utf32,
}

impl Encoding {
    /// Picks from the client's list, preferring UTF-8 (cheapest for us), then UTF-32, else UTF-16.
    pub fn negotiate(offered: Option<&[String]>) -> Encoding {
        let offered = offered.unwrap_or(&[]);
        let has = |s: &str| offered.iter().any(|o| o == s);
        if has("utf-8") {
            Encoding::Utf8
        } else if has("utf-32") {
            Encoding::Utf32
        } else {
            Encoding::Utf16
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16 => "utf-16",
            Encoding::Utf32 => "utf-32",
        }
    }

    fn width(self, c: char) -> u32 {
        match self {
            Encoding::Utf8 => c.len_utf8() as u32,
            Encoding::Utf16 => c.len_utf16() as u32,
            Encoding::Utf32 => 1,
        }
    }
}

/// A zero-based position in the client's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub character: u32,
}

/// One text change from `didChange`: a range (or the whole text) and its replacement.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub range: Option<(Pos, Pos)>,
    pub text: String,
}

/// What an applied change did, in char offsets of the text before it, for watchers and syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub start_char: usize,
    pub old_end_char: usize,
    pub new_end_char: usize,
    pub start_byte: usize,
    pub old_end_byte: usize,
    pub new_end_byte: usize,
    pub start_point: (usize, usize),
    pub old_end_point: (usize, usize),
    pub new_end_point: (usize, usize),
}

#[derive(Debug, Clone)]
pub struct Document {
    pub uri: String,
    pub language: String,
    pub version: i32,
    pub text: Rope,
    pub encoding: Encoding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// The change's version is not newer than the document's: a stale or reordered notification.
    Stale { have: i32, got: i32 },
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Stale { have, got } => {
                write!(f, "ignored a change to version {got}: the document is already at version {have}")
            }
        }
    }
}

impl Document {
    pub fn new(uri: impl Into<String>, language: impl Into<String>, version: i32, text: &str, encoding: Encoding) -> Self {
        Document { uri: uri.into(), language: language.into(), version, text: Rope::from_str(text), encoding }
    }

    /// The char offset of a position (clamped, snapped to a character start).
    pub fn offset(&self, pos: Pos) -> usize {
        offset(&self.text, self.encoding, pos)
    }

    /// The position of a char offset (clamped to the end).
    pub fn position(&self, char_idx: usize) -> Pos {
        position(&self.text, self.encoding, char_idx)
    }

    /// Applies a `didChange`'s changes in order. A version that is not newer than the current one
    /// is refused (the text is left untouched); the changes of one notification all apply.
    pub fn apply(&mut self, version: i32, changes: &[Change]) -> Result<Vec<Applied>, ChangeError> {
        if version <= self.version {
            return Err(ChangeError::Stale { have: self.version, got: version });
        }
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            out.push(self.apply_one(c));
        }
        self.version = version;
        Ok(out)
    }

    fn apply_one(&mut self, c: &Change) -> Applied {
        let (start, end) = match c.range {
            None => (0, self.text.len_chars()),
            Some((a, b)) => {
                let (a, b) = (self.offset(a), self.offset(b));
                (a.min(b), a.max(b))
            }
        };
        let rope = &self.text;
        let start_byte = rope.char_to_byte(start);
        let old_end_byte = rope.char_to_byte(end);
        let start_point = point(rope, start);
        let old_end_point = point(rope, end);
        if c.range.is_none() {
            self.text = Rope::from_str(&c.text);
        } else {
            if end > start {
                self.text.remove(start..end);
            }
            if !c.text.is_empty() {
                self.text.insert(start, &c.text);
            }
        }
        let new_end = start + c.text.chars().count();
        Applied {
            start_char: start,
            old_end_char: end,
            new_end_char: new_end,
            start_byte,
            old_end_byte,
            new_end_byte: start_byte + c.text.len(),
            start_point,
            old_end_point,
            new_end_point: point(&self.text, new_end),
        }
    }

    /// The text between two char offsets (clamped).
    pub fn slice(&self, start: usize, end: usize) -> String {
        let n = self.text.len_chars();
        let (s, e) = (start.min(n), end.min(n));
        self.text.slice(s.min(e)..e.max(s)).to_string()
    }
}

/// `(row, byte column)` of a char offset, as tree-sitter counts.
pub fn point(rope: &Rope, char_idx: usize) -> (usize, usize) {
    let char_idx = char_idx.min(rope.len_chars());
    let line = rope.char_to_line(char_idx);
    let col = rope.char_to_byte(char_idx) - rope.line_to_byte(line);
    (line, col)
}

/// The chars of a line that count for positions (without its line break).
fn line_content_len(rope: &Rope, line: usize) -> usize {
    let l = rope.line(line);
    let mut n = l.len_chars();
    if n > 0 && l.char(n - 1) == '\n' {
        n -= 1;
        if n > 0 && l.char(n - 1) == '\r' {
            n -= 1;
        }
    } else if n > 0 && l.char(n - 1) == '\r' {
        n -= 1;
    }
    n
}

pub fn offset(rope: &Rope, enc: Encoding, pos: Pos) -> usize {
    let lines = rope.len_lines();
    let line = pos.line as usize;
    if line >= lines {
        return rope.len_chars();
    }
    let start = rope.line_to_char(line);
    let len = line_content_len(rope, line);
    if enc == Encoding::Utf32 {
        return start + (pos.character as usize).min(len);
    }
    let mut units = 0u32;
    for (i, c) in rope.line(line).chars().take(len).enumerate() {
        let w = enc.width(c);
        if units + w > pos.character {
            // Inside this character (or exactly at its start): snap to its start.
            return start + i;
        }
        units += w;
    }
    start + len
}

/// A whole-text change as the change of the span where `text` differs from the document: the
/// common start and end are left out (the same result when applied).
pub fn narrow_full_change(doc: &Document, text: &str) -> Change {
    let old_len = doc.text.len_chars();
    let new_len = text.chars().count();
    let mut p = doc.text.chars().zip(text.chars()).take_while(|(a, b)| a == b).count();
    // Never between the two characters of a CRLF line end.
    if p > 0 && doc.text.char(p - 1) == '\r' {
        p -= 1;
    }
    let room = old_len.min(new_len) - p;
    let mut s = doc.text.chars_at(old_len).reversed().zip(text.chars().rev()).take(room).take_while(|(a, b)| a == b).count();
    if s > 0 && old_len - s > 0 && doc.text.char(old_len - s) == '\n' && doc.text.char(old_len - s - 1) == '\r' {
        s -= 1;
    }
    let start_byte = text.char_indices().nth(p).map_or(text.len(), |(i, _)| i);
    let end_byte = text.char_indices().nth(new_len - s).map_or(text.len(), |(i, _)| i);
    Change { range: Some((doc.position(p), doc.position(old_len - s))), text: text[start_byte..end_byte].to_string() }
}

pub fn position(rope: &Rope, enc: Encoding, char_idx: usize) -> Pos {
    let char_idx = char_idx.min(rope.len_chars());
    let line = rope.char_to_line(char_idx);
    let start = rope.line_to_char(line);
    let character = match enc {
        Encoding::Utf32 => (char_idx - start) as u32,
        Encoding::Utf8 => (rope.char_to_byte(char_idx) - rope.line_to_byte(line)) as u32,
        Encoding::Utf16 => (rope.char_to_utf16_cu(char_idx) - rope.char_to_utf16_cu(start)) as u32,
    };
    Pos { line: line as u32, character }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_whole_text_change_narrows_to_what_differs_and_applies_the_same() {
        let cases = [
            ("add() {\n  echo $(( $1 + $2 ))\n}\n", "# adds\nadd() {\n  echo $(( $1 + $2 ))\n}\n"),
            ("a\r\nb\r\nc\r\n", "a\r\nb\r\nc\r\nd\r\n"),
            ("a\r\nb", "a\nb"),
            ("x\r\n", "x\r\r\n"),
            ("héllo wörld 😀 end", "héllo wörld 😀😀 end"),
            ("same", "same"),
            ("", "new"),
            ("old", ""),
            ("aaaa", "aa"),
        ];
        for (old, new) in cases {
            for enc in [Encoding::Utf16, Encoding::Utf8, Encoding::Utf32] {
                let mut doc = Document::new("u", "t", 1, old, enc);
                let c = narrow_full_change(&doc, new);
                assert!(c.range.is_some());
                doc.apply(2, &[c.clone()]).unwrap();
                assert_eq!(doc.text.to_string(), new, "{old:?} -> {new:?} via {c:?} ({enc:?})");
            }
        }
        let doc = Document::new("u", "t", 1, "add() {\n  echo $(( $1 + $2 ))\n}\n", Encoding::Utf16);
        let c = narrow_full_change(&doc, "# adds\nadd() {\n  echo $(( $1 + $2 ))\n}\n");
        assert_eq!((c.range, c.text.as_str()), (Some((Pos { line: 0, character: 0 }, Pos { line: 0, character: 0 })), "# adds\n"));
    }
    use super::*;

    fn p(line: u32, character: u32) -> Pos {
        Pos { line, character }
    }

    #[test]
    fn negotiation_prefers_utf8_and_defaults_to_utf16() {
        assert_eq!(Encoding::negotiate(None), Encoding::Utf16);
        assert_eq!(Encoding::negotiate(Some(&["utf-16".into(), "utf-8".into()])), Encoding::Utf8);
        assert_eq!(Encoding::negotiate(Some(&["utf-32".into()])), Encoding::Utf32);
        assert_eq!(Encoding::negotiate(Some(&["latin-1".into()])), Encoding::Utf16);
    }

    #[test]
    fn astral_characters_in_each_encoding() {
        // "a😀b": 😀 is 4 bytes, 2 UTF-16 units, 1 code point.
        for (enc, after) in [(Encoding::Utf8, 5), (Encoding::Utf16, 3), (Encoding::Utf32, 2)] {
            let d = Document::new("u", "rust", 0, "a😀b\nx", enc);
            assert_eq!(d.offset(p(0, after)), 2, "{enc:?}");
            assert_eq!(d.position(2), p(0, after), "{enc:?}");
        }
        // Inside the surrogate pair / UTF-8 sequence: snap to the character's start.
        let d = Document::new("u", "rust", 0, "a😀b", Encoding::Utf16);
        assert_eq!(d.offset(p(0, 2)), 1);
        let d = Document::new("u", "rust", 0, "a😀b", Encoding::Utf8);
        assert_eq!(d.offset(p(0, 3)), 1);
    }

    #[test]
    fn positions_past_the_end_clamp() {
        let d = Document::new("u", "rust", 0, "ab\r\ncd", Encoding::Utf16);
        assert_eq!(d.offset(p(0, 99)), 2, "stops before \\r\\n");
        assert_eq!(d.offset(p(7, 0)), 6);
        assert_eq!(d.offset(p(1, 1)), 5);
    }

    #[test]
    fn incremental_changes_and_stale_versions() {
        let mut d = Document::new("u", "rust", 1, "fn main() {}\n", Encoding::Utf16);
        d.apply(2, &[Change { range: Some((p(0, 11), p(0, 11))), text: "\n    println!(\"é\");\n".into() }]).unwrap();
        assert_eq!(d.text.to_string(), "fn main() {\n    println!(\"é\");\n}\n");
        let before = d.text.to_string();
        assert_eq!(d.apply(2, &[Change { range: None, text: "x".into() }]), Err(ChangeError::Stale { have: 2, got: 2 }));
        assert_eq!(d.text.to_string(), before);
        // A reversed range is treated as its ordered form; past-the-end ranges clamp.
        d.apply(3, &[Change { range: Some((p(9, 0), p(2, 1))), text: "".into() }]).unwrap();
        assert_eq!(d.text.to_string(), "fn main() {\n    println!(\"é\");\n}");
        d.apply(4, &[Change { range: None, text: "new".into() }]).unwrap();
        assert_eq!(d.text.to_string(), "new");
    }
}
