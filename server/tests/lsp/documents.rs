//! Documents: thousands of random incremental edits with non-ASCII and astral characters, in each
//! encoding, keep the server's text identical to a reference that counts positions independently.

use keel_server::document::{Change, Document, Encoding, Pos};
use proptest::prelude::*;

/// The reference: a Vec of lines (with their breaks), positions counted with std's own
/// `len_utf8`/`len_utf16`, clamped the way LSP says (past the end of a line → its end).
fn ref_offset(text: &str, enc: Encoding, pos: Pos) -> usize {
    // Lines end at "\r\n", "\r" or "\n", as LSP says.
    let mut lines: Vec<(usize, &str)> = Vec::new();
    let (mut start, b) = (0, text.as_bytes());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' || b[i] == b'\r' {
            lines.push((start, &text[start..i]));
            i += if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            start = i;
        } else {
            i += 1;
        }
    }
    lines.push((start, &text[start..]));
    let Some((base, content)) = lines.get(pos.line as usize) else { return text.len() };
    let mut units = 0u32;
    for (bi, c) in content.char_indices() {
        let w = match enc {
            Encoding::Utf8 => c.len_utf8() as u32,
            Encoding::Utf16 => c.len_utf16() as u32,
            Encoding::Utf32 => 1,
        };
        if units + w > pos.character {
            return base + bi;
        }
        units += w;
    }
    base + content.len()
}

fn pieces() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "é", "😀", "\n", "x y", "日本", "\r\n", "𝄞", "", "\t"]), 0..6).prop_map(|v| v.concat())
}

fn encodings() -> impl Strategy<Value = Encoding> {
    prop::sample::select(vec![Encoding::Utf8, Encoding::Utf16, Encoding::Utf32])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_incremental_edits_match_the_reference(
        enc in encodings(),
        init in pieces(),
        edits in prop::collection::vec((0u32..8, 0u32..12, 0u32..8, 0u32..12, pieces(), any::<bool>()), 1..60),
    ) {
        let mut doc = Document::new("file:///t", "rust", 0, &init, enc);
        let mut reference = init.clone();
        for (i, (l1, c1, l2, c2, text, full)) in edits.into_iter().enumerate() {
            let change = if full && i % 7 == 0 {
                Change { range: None, text: text.clone() }
            } else {
                Change { range: Some((Pos { line: l1, character: c1 }, Pos { line: l2, character: c2 })), text: text.clone() }
            };
            match change.range {
                None => reference = text.clone(),
                Some((a, b)) => {
                    let (x, y) = (ref_offset(&reference, enc, a), ref_offset(&reference, enc, b));
                    let (x, y) = (x.min(y), x.max(y));
                    reference.replace_range(x..y, &text);
                }
            }
            doc.apply(i as i32 + 1, &[change]).unwrap();
            prop_assert_eq!(doc.text.to_string(), reference.clone());
        }
        // Round trip of every position back and forth.
        for off in 0..doc.text.len_chars() {
            // Between the halves of "\r\n" is no position LSP can name.
            if off > 0 && doc.text.char(off - 1) == '\r' && doc.text.char(off) == '\n' {
                continue;
            }
            prop_assert_eq!(doc.offset(doc.position(off)), off);
        }
    }
}
