//! After an accepted edit, the server keeps watching the document: an undo records `reverted`, a
//! change of the edited text records `edited` with the user's final text.
//!
//! A watch keeps two versions of the document — as it was before the edit and as it should be after
//! it — and mirrors into both every change made outside the edited region, so that comparing the
//! current text with them tells exactly what happened to the region itself.

use keel_trajectory::Decision;
use ropey::Rope;
use uuid::Uuid;

use crate::document::Applied;

/// Files above this size are not watched (the comparison is linear in the file).
pub const MAX_WATCHED_CHARS: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Watch {
    pub step: Uuid,
    pub episode: Uuid,
    pub uri: String,
    pub deadline: std::time::Instant,
    before: Vec<char>,
    after: Vec<char>,
    /// Start of the edited region (the same in both versions).
    start: usize,
    len_old: usize,
    len_new: usize,
    new_text: String,
    /// The edit has been seen in the document.
    armed: bool,
    /// The region that may differ from `before`/`after`, in the document's current offsets.
    cur_start: usize,
    cur_end: usize,
    /// The document's current length in chars.
    cur_total: usize,
    /// The region's current text when it differs from the model's text.
    pub edited: Option<String>,
}

/// What a change did to a watched edit.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Still watching.
    Watching,
    /// The edit was undone: record `reverted` and stop watching.
    Reverted,
}

impl Watch {
    /// `text` is the document before the edit; `start_char..start_char+old_len` is replaced by `new_text`.
    pub fn new(step: Uuid, episode: Uuid, uri: String, text: &str, start_char: usize, old_len: usize, new_text: &str, window: std::time::Duration) -> Option<Watch> {
        let before: Vec<char> = text.chars().collect();
        if before.len() > MAX_WATCHED_CHARS || start_char.saturating_add(old_len) > before.len() {
            return None;
        }
        let new_chars: Vec<char> = new_text.chars().collect();
        let mut after = before[..start_char].to_vec();
        after.extend_from_slice(&new_chars);
        after.extend_from_slice(&before[start_char + old_len..]);
        Some(Watch {
            step,
            episode,
            uri,
            // A client's window of any size: past what an Instant can hold is "for as long as the
            // server runs" (a year).
            deadline: std::time::Instant::now().checked_add(window).unwrap_or_else(|| std::time::Instant::now() + std::time::Duration::from_secs(365 * 86400)),
            after,
            start: start_char,
            len_old: old_len,
            len_new: new_chars.len(),
            new_text: new_text.to_string(),
            armed: false,
            cur_start: start_char,
            cur_end: start_char + old_len,
            cur_total: before.len(),
            edited: None,
            before,
        })
    }

    /// Mirrors one applied change (offsets in the text before it; `text` is what was inserted).
    ///
    /// The document always equals `before`/`after` outside the region `cur_start..cur_end`: the
    /// same prefix, and the same suffix counted from the end. Changes there are mirrored into both;
    /// changes that touch the region widen it.
    pub fn change(&mut self, a: &Applied, text: &str) {
        let ins: Vec<char> = text.chars().collect();
        let removed = a.old_end_char - a.start_char;
        // Text typed right against the edited text changes it (a comment at the end of its line),
        // except whole lines: lines added above a region that starts a line, or below one that
        // ends a line, are the user's own code next to it.
        let insertion = a.old_end_char == a.start_char;
        let starts_line = self.cur_start == 0 || self.before.get(self.cur_start - 1) == Some(&'\n');
        let lines_above = insertion && a.start_char == self.cur_start && starts_line && text.ends_with('\n') && self.cur_start < self.cur_end;
        let ends_line = self.edited.as_deref().unwrap_or(&self.new_text).ends_with('\n');
        let against_end = insertion && a.start_char == self.cur_end && !ends_line;
        let before_region = a.old_end_char < self.cur_start || (a.old_end_char == self.cur_start && a.start_char < self.cur_start) || lines_above;
        let after_region = a.start_char >= self.cur_end && a.start_char > self.cur_start && !against_end;
        if before_region {
            splice(&mut self.before, a.start_char, a.old_end_char, &ins);
            splice(&mut self.after, a.start_char, a.old_end_char, &ins);
            let d = ins.len() as isize - removed as isize;
            let mv = |x: usize| (x as isize + d).max(0) as usize;
            self.start = mv(self.start);
            self.cur_start = mv(self.cur_start);
            self.cur_end = mv(self.cur_end);
        } else if after_region {
            let (fa, fb) = (self.cur_total.saturating_sub(a.start_char), self.cur_total.saturating_sub(a.old_end_char));
            let (lb, la) = (self.before.len(), self.after.len());
            splice(&mut self.before, lb.saturating_sub(fa), lb.saturating_sub(fb), &ins);
            splice(&mut self.after, la.saturating_sub(fa), la.saturating_sub(fb), &ins);
        } else {
            self.cur_start = self.cur_start.min(a.start_char);
            let end = self.cur_end.max(a.old_end_char);
            self.cur_end = (end as isize + ins.len() as isize - removed as isize).max(self.cur_start as isize) as usize;
        }
        self.cur_total = (self.cur_total as isize + ins.len() as isize - removed as isize).max(0) as usize;
    }

    /// Compares the document with both versions after a `didChange`. Outside `cur_start..cur_end`
    /// the document equals both (`change` keeps it so), so only the region is compared: a
    /// keystroke costs the region, not the file, and nothing is copied. Should the lengths
    /// disagree, the whole text is compared instead.
    pub fn check(&mut self, current: &Rope) -> Outcome {
        self.check_at(current, true)
    }

    /// [`Self::check`]; `trust_region: false` compares the whole text (the tests' reference).
    fn check_at(&mut self, current: &Rope, trust_region: bool) -> Outcome {
        let n = current.len_chars();
        let bounded = trust_region && n == self.cur_total && self.cur_start <= self.cur_end && self.cur_end <= n && self.cur_start <= self.start;
        let (lo, tail) = if bounded { (self.cur_start, n - self.cur_end) } else { (0, 0) };
        self.cur_total = n;
        let equals = |v: &[char]| n == v.len() && current.slice(lo..n - tail).chars().eq(v[lo..v.len() - tail].iter().copied());
        if equals(&self.after) {
            self.armed = true;
            self.cur_start = self.start;
            self.cur_end = self.start + self.len_new;
            self.edited = None;
            return Outcome::Watching;
        }
        if !self.armed {
            return Outcome::Watching;
        }
        if equals(&self.before) {
            return Outcome::Reverted;
        }
        let e1 = self.start + self.len_new;
        let tail_max = self.after.len().saturating_sub(e1);
        // The common prefix of the document and `after`, up to the edit's start (known equal up to `lo`).
        let lo = lo.min(self.start).min(self.after.len());
        let p = lo + current.chars_at(lo).zip(&self.after[lo..]).take(self.start - lo).take_while(|(x, y)| x == *y).count();
        // The common suffix, up to the text after the edit (known equal for `tail`).
        let tail = tail.min(tail_max).min(self.after.len());
        let s = tail + current.chars_at(n - tail).reversed().zip(self.after[..self.after.len() - tail].iter().rev()).take(tail_max - tail).take_while(|(x, y)| x == *y).count();
        let end = n.saturating_sub(s).max(p);
        let region: String = current.slice(p..end).to_string();
        let old: String = self.before[self.start..self.start + self.len_old].iter().collect();
        if p == self.start && s == tail_max && region == old {
            return Outcome::Reverted;
        }
        self.edited = (region != self.new_text).then_some(region);
        Outcome::Watching
    }

    /// Whether the edit has been seen in the document.
    pub fn armed(&self) -> bool {
        self.armed
    }

    /// The decision to record when the watch ends without an undo.
    pub fn final_decision(&self) -> Option<Decision> {
        self.edited.as_ref().map(|t| Decision::Edited { final_text: t.clone() })
    }
}

fn splice(v: &mut Vec<char>, a: usize, b: usize, ins: &[char]) {
    let n = v.len();
    let (a, b) = (a.min(n), b.min(n).max(a.min(n)));
    v.splice(a..b, ins.iter().copied());
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Change, Document, Encoding, Pos};

    fn pos(line: u32, character: u32) -> Pos {
        Pos { line, character }
    }

    /// Applies changes to `doc` and feeds them to the watch, as the server does.
    fn feed(doc: &mut Document, w: &mut Watch, changes: Vec<Change>) -> Outcome {
        let v = doc.version + 1;
        let applied = doc.apply(v, &changes).unwrap();
        for (a, c) in applied.iter().zip(&changes) {
            w.change(a, &c.text);
        }
        w.check(&doc.text)
    }

    fn setup() -> (Document, Watch) {
        let text = "def add(a, b):\n    return a - b\n";
        let doc = Document::new("u", "python", 1, text, Encoding::Utf16);
        let start = text.find("a - b").unwrap();
        let w = Watch::new(Uuid::nil(), Uuid::nil(), "u".into(), text, start, 5, "a + b", std::time::Duration::from_secs(60)).unwrap();
        // A window no Instant can hold (a client's `watch_secs` of u64::MAX) and a range past the
        // end by overflow are no panic.
        assert!(Watch::new(Uuid::nil(), Uuid::nil(), "u".into(), text, start, 5, "a + b", std::time::Duration::from_secs(u64::MAX)).is_some());
        assert!(Watch::new(Uuid::nil(), Uuid::nil(), "u".into(), text, usize::MAX, 5, "a + b", std::time::Duration::from_secs(1)).is_none());
        (doc, w)
    }

    fn apply_edit(doc: &mut Document, w: &mut Watch) {
        let o = feed(doc, w, vec![Change { range: Some((pos(1, 11), pos(1, 16))), text: "a + b".into() }]);
        assert_eq!(o, Outcome::Watching);
        assert!(w.armed);
    }

    #[test]
    fn undo_as_a_whole_line_change_is_a_revert() {
        let (mut doc, mut w) = setup();
        apply_edit(&mut doc, &mut w);
        // Typing elsewhere is mirrored, not mistaken for an edit of the region.
        assert_eq!(feed(&mut doc, &mut w, vec![Change { range: Some((pos(0, 0), pos(0, 0))), text: "# hi\n".into() }]), Outcome::Watching);
        assert_eq!(w.final_decision(), None);
        // Neovim sends an undo as the whole line.
        let o = feed(&mut doc, &mut w, vec![Change { range: Some((pos(2, 0), pos(3, 0))), text: "    return a - b\n".into() }]);
        assert_eq!(o, Outcome::Reverted);
    }

    #[test]
    fn changing_the_edited_text_is_recorded_as_edited() {
        let (mut doc, mut w) = setup();
        apply_edit(&mut doc, &mut w);
        feed(&mut doc, &mut w, vec![Change { range: Some((pos(1, 15), pos(1, 16))), text: "b + 0".into() }]);
        assert_eq!(w.final_decision(), Some(Decision::Edited { final_text: "a + b + 0".into() }));
        // Typing after the region is mirrored.
        feed(&mut doc, &mut w, vec![Change { range: Some((pos(2, 0), pos(2, 0))), text: "x = 1\n".into() }]);
        assert_eq!(w.final_decision(), Some(Decision::Edited { final_text: "a + b + 0".into() }));
        // Back to the model's text: no longer edited.
        feed(&mut doc, &mut w, vec![Change { range: Some((pos(1, 16), pos(1, 20))), text: "".into() }]);
        assert_eq!(w.final_decision(), None);
    }

    #[test]
    fn text_typed_against_the_edit_changes_it_and_whole_lines_next_to_it_do_not() {
        // A comment typed at the end of the edited text's line: it changed that text.
        let (mut doc, mut w) = setup();
        apply_edit(&mut doc, &mut w);
        feed(&mut doc, &mut w, vec![Change { range: Some((pos(1, 16), pos(1, 16))), text: "  # sum".into() }]);
        assert_eq!(w.final_decision(), Some(Decision::Edited { final_text: "a + b  # sum".into() }));

        // An edit of whole lines: a line added right above it, or typed right below it, is not.
        let text = "def add(a, b):\n    return a - b\n\n";
        let mut doc = Document::new("u", "python", 1, text, Encoding::Utf16);
        let start = text.find("    return").unwrap();
        let mut w = Watch::new(Uuid::nil(), Uuid::nil(), "u".into(), text, start, 17, "    return a + b\n", std::time::Duration::from_secs(60)).unwrap();
        feed(&mut doc, &mut w, vec![Change { range: Some((pos(1, 0), pos(2, 0))), text: "    return a + b\n".into() }]);
        assert!(w.armed);
        feed(&mut doc, &mut w, vec![Change { range: Some((pos(1, 0), pos(1, 0))), text: "    # adds\n".into() }]);
        feed(&mut doc, &mut w, vec![Change { range: Some((pos(3, 0), pos(3, 0))), text: "x = 1".into() }]);
        assert_eq!(doc.text.to_string(), "def add(a, b):\n    # adds\n    return a + b\nx = 1\n");
        assert_eq!(w.final_decision(), None, "lines next to the edit are the user's own code");
        // An undo is still seen.
        let o = feed(&mut doc, &mut w, vec![Change { range: Some((pos(2, 0), pos(3, 0))), text: "    return a - b\n".into() }]);
        assert_eq!(o, Outcome::Reverted);
    }

    /// Random typing, deleting and undoing around and inside the edit: comparing only the region
    /// decides exactly as comparing the whole text does.
    #[test]
    fn the_region_compare_agrees_with_the_whole_text() {
        use proptest::prelude::*;
        let op = (0u32..4, 0u32..40, 0u32..6, prop::sample::select(vec!["", "a", "a + b", "-", "\n", "xy\n    ", "a - b"]));
        proptest!(ProptestConfig::with_cases(300), |(ops in prop::collection::vec(op, 1..25))| {
            let (mut doc, mut w) = setup();
            apply_edit(&mut doc, &mut w);
            for (line, ch, len, ins) in ops {
                let start = pos(line, ch);
                let end = pos(line, ch + len);
                let v = doc.version + 1;
                let changes = vec![Change { range: Some((start, end)), text: ins.to_string() }];
                let applied = doc.apply(v, &changes).unwrap();
                for (a, c) in applied.iter().zip(&changes) {
                    w.change(a, &c.text);
                }
                let mut reference = w.clone();
                let want = reference.check_at(&doc.text, false);
                let got = w.check(&doc.text);
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(&w.edited, &reference.edited);
                if got == Outcome::Reverted {
                    break;
                }
            }
        });
    }

    #[test]
    fn full_text_undo_is_a_revert() {
        let (mut doc, mut w) = setup();
        apply_edit(&mut doc, &mut w);
        let o = feed(&mut doc, &mut w, vec![Change { range: None, text: "def add(a, b):\n    return a - b\n".into() }]);
        assert_eq!(o, Outcome::Reverted);
    }
}
