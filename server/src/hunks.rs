//! The hunks of a pending edit, for review hunk by hunk: the edited text, widened to whole lines,
//! diffed line by line; a partial accept keeps the chosen hunks and the original lines elsewhere.
//!
//! An edit replaces one span of one file, so its hunks all lie in that span's lines. The client
//! gets them with `keel/pending` and answers with the indices it kept (`keel.step.accept
//! {hunks}`); the server turns them into the text that replaces the edit's `old_text`, which is
//! what an `edited` decision records (`final_text`), so a partial accept pairs like a user's edit.

use serde_json::{Value, json};

/// Above this many cells (old lines × new lines, after the common ends are cut) the diff is not
/// computed: the whole span is one hunk.
const MAX_DIFF_CELLS: usize = 1 << 20;

/// One hunk: `old_len` lines of the span from `old_start` become `new_len` lines of the proposal
/// from `new_start` (counted from the span's first line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: usize,
    pub old_len: usize,
    pub new_start: usize,
    pub new_len: usize,
}

/// A pending edit as lines: the span's lines before and after, and their hunks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Review {
    /// The text of the span's first line before the edit's start, and of its last line after the
    /// edit's end (through the newline): the same before and after the edit.
    prefix: String,
    suffix: String,
    /// The span's lines, each with its newline (the file's last line may have none).
    old: Vec<String>,
    new: Vec<String>,
    pub hunks: Vec<Hunk>,
}

/// Why a client's choice of hunks cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHunks(pub String);

/// What the user kept of the hunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Every hunk: a plain accept.
    All,
    /// None: a rejection.
    None,
    /// Some: the text that replaces the edit's `old_text`.
    Part { final_text: String, kept: usize, of: usize },
}

impl Review {
    /// `original[start..end]` (byte offsets on char boundaries) replaced by `new_text`.
    pub fn new(original: &str, start: usize, end: usize, new_text: &str) -> Review {
        let start = floor_boundary(original, start.min(original.len()));
        let end = floor_boundary(original, end.clamp(start, original.len()));
        let line_start = original[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = original[end..].find('\n').map_or(original.len(), |i| end + i + 1);
        let prefix = &original[line_start..start];
        let suffix = &original[end..line_end];
        let old = lines(&original[line_start..line_end]);
        let new = lines(&format!("{prefix}{new_text}{suffix}"));
        let hunks = diff(&old, &new);
        Review { prefix: prefix.to_string(), suffix: suffix.to_string(), old, new, hunks }
    }

    /// The text that replaces `old_text` when only the hunks in `kept` are applied.
    pub fn choose(&self, kept: &[usize]) -> Result<Choice, BadHunks> {
        let n = self.hunks.len();
        let mut seen = vec![false; n];
        for &i in kept {
            if i >= n {
                return Err(BadHunks(format!("hunk {i} does not exist: this step has {n} hunk{} (0-based indices)", if n == 1 { "" } else { "s" })));
            }
            if std::mem::replace(&mut seen[i], true) {
                return Err(BadHunks(format!("hunk {i} is listed twice")));
            }
        }
        let count = seen.iter().filter(|s| **s).count();
        if count == n {
            return Ok(Choice::All);
        }
        if count == 0 {
            return Ok(Choice::None);
        }
        let mut out = String::new();
        let mut at = 0;
        for (h, keep) in self.hunks.iter().zip(&seen) {
            out.extend(self.old[at..h.old_start].iter().map(String::as_str));
            if *keep {
                out.extend(self.new[h.new_start..h.new_start + h.new_len].iter().map(String::as_str));
            } else {
                out.extend(self.old[h.old_start..h.old_start + h.old_len].iter().map(String::as_str));
            }
            at = h.old_start + h.old_len;
        }
        out.extend(self.old[at..].iter().map(String::as_str));
        // The span's first line comes from the file or the proposal, and both begin with the
        // prefix (the same holds for the last line and the suffix).
        let inner = out
            .strip_prefix(self.prefix.as_str())
            .and_then(|s| s.strip_suffix(self.suffix.as_str()))
            .ok_or_else(|| BadHunks("these hunks cannot be applied apart from the others; accept or reject the whole edit".into()))?;
        Ok(Choice::Part { final_text: inner.to_string(), kept: count, of: n })
    }

    /// The hunks as `keel/pending` shows them: `line` is the document line (0-based) where the
    /// removed lines start, or where the added lines go, when the span starts at `first_line`.
    pub fn to_json(&self, first_line: u32) -> Value {
        let text = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|l| {
                    let l = l.strip_suffix('\n').unwrap_or(l);
                    l.strip_suffix('\r').unwrap_or(l).to_string()
                })
                .collect()
        };
        Value::Array(
            self.hunks
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    json!({
                        "index": i,
                        "line": first_line.saturating_add(h.old_start.min(u32::MAX as usize) as u32),
                        "removed": text(&self.old[h.old_start..h.old_start + h.old_len]),
                        "added": text(&self.new[h.new_start..h.new_start + h.new_len]),
                    })
                })
                .collect(),
        )
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn lines(s: &str) -> Vec<String> {
    s.split_inclusive('\n').map(str::to_string).collect()
}

/// The hunks between two lists of lines: the common ends cut, then a longest common subsequence
/// (bounded: past [`MAX_DIFF_CELLS`] the middle is one hunk).
fn diff(old: &[String], new: &[String]) -> Vec<Hunk> {
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let tail = old[head..].iter().rev().zip(new[head..].iter().rev()).take_while(|(a, b)| a == b).count();
    let (a, b) = (&old[head..old.len() - tail], &new[head..new.len() - tail]);
    if a.is_empty() && b.is_empty() {
        return Vec::new();
    }
    if a.len().saturating_mul(b.len()) > MAX_DIFF_CELLS {
        return vec![Hunk { old_start: head, old_len: a.len(), new_start: head, new_len: b.len() }];
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let w = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * w + j] = if a[i] == b[j] { lcs[(i + 1) * w + j + 1] + 1 } else { lcs[(i + 1) * w + j].max(lcs[i * w + j + 1]) };
        }
    }
    let mut hunks = Vec::new();
    let (mut i, mut j) = (0, 0);
    let mut open: Option<Hunk> = None;
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            hunks.extend(open.take());
            i += 1;
            j += 1;
            continue;
        }
        let h = open.get_or_insert(Hunk { old_start: head + i, old_len: 0, new_start: head + j, new_len: 0 });
        if j < b.len() && (i == a.len() || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j]) {
            h.new_len += 1;
            j += 1;
        } else {
            h.old_len += 1;
            i += 1;
        }
    }
    hunks.extend(open);
    hunks
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";

    fn review(old: &str, new: &str) -> Review {
        let start = FILE.find(old).unwrap();
        Review::new(FILE, start, start + old.len(), new)
    }

    #[test]
    fn hunks_of_an_edit_and_their_lines() {
        let r = review("a - b\n\n\ndef mul(a, b):\n    return a * b", "a + b\n\n\ndef mul(a, b):\n    return b * a");
        assert_eq!(r.hunks.len(), 2);
        let j = r.to_json(1);
        assert_eq!(j[0], json!({"index": 0, "line": 1, "removed": ["    return a - b"], "added": ["    return a + b"]}));
        assert_eq!(j[1], json!({"index": 1, "line": 5, "removed": ["    return a * b"], "added": ["    return b * a"]}));
        // Keeping one hunk: the text that replaces old_text, ready for an `edited` decision.
        assert_eq!(r.choose(&[0]), Ok(Choice::Part { final_text: "a + b\n\n\ndef mul(a, b):\n    return a * b".into(), kept: 1, of: 2 }));
        assert_eq!(r.choose(&[1]), Ok(Choice::Part { final_text: "a - b\n\n\ndef mul(a, b):\n    return b * a".into(), kept: 1, of: 2 }));
        assert_eq!(r.choose(&[1, 0]), Ok(Choice::All));
        assert_eq!(r.choose(&[]), Ok(Choice::None));
        assert!(r.choose(&[2]).unwrap_err().0.contains("this step has 2 hunks"));
        assert!(r.choose(&[0, 0]).unwrap_err().0.contains("twice"));
        assert!(r.choose(&[usize::MAX]).is_err());
    }

    #[test]
    fn insertions_deletions_and_new_files() {
        // Lines added at the end of the file and one removed: two hunks.
        let r = review("def add(a, b):\n    return a - b\n", "def add(a, b):\n    \"\"\"Add.\"\"\"\n    return a + b\n");
        assert_eq!(r.hunks, [Hunk { old_start: 1, old_len: 1, new_start: 1, new_len: 2 }]);
        let r = Review::new("", 0, 0, "x = 1\ny = 2\n");
        assert_eq!(r.hunks, [Hunk { old_start: 0, old_len: 0, new_start: 0, new_len: 2 }]);
        assert_eq!(r.choose(&[0]), Ok(Choice::All));
        let r = review("\n\ndef mul(a, b):\n    return a * b\n", "");
        assert_eq!(r.to_json(0)[0]["removed"], json!(["", "", "def mul(a, b):", "    return a * b"]));
        assert_eq!(r.to_json(0)[0]["added"], json!([]));
        // A file without a final newline and offsets past the end or inside a char are no panic.
        let r = Review::new("é = 1", 1, 99, " = 2");
        assert_eq!(r.hunks.len(), 1);
        assert_eq!(r.choose(&[0]), Ok(Choice::All));
    }

    #[test]
    fn every_choice_of_hunks_yields_the_lines_kept() {
        use proptest::prelude::*;
        let line = prop::sample::select(vec!["a\n", "b\n", "c\n", "  d\n", "\n"]);
        proptest!(ProptestConfig::with_cases(200), |(old in prop::collection::vec(line.clone(), 0..8), new in prop::collection::vec(line, 0..8), mask in 0u32..256)| {
            let (old, new) = (old.concat(), new.concat());
            let file = format!("head\n{old}tail\n");
            let r = Review::new(&file, 5, 5 + old.len(), &new);
            let kept: Vec<usize> = (0..r.hunks.len()).filter(|i| mask & (1 << i) != 0).collect();
            match r.choose(&kept).unwrap() {
                Choice::All => prop_assert_eq!(kept.len(), r.hunks.len()),
                Choice::None => prop_assert!(kept.is_empty()),
                Choice::Part { final_text, .. } => {
                    // Kept hunks show their added lines, the others their removed lines.
                    let got = format!("head\n{final_text}tail\n");
                    let mut want = String::from("head\n");
                    let mut at = 0;
                    let ol: Vec<&str> = old.split_inclusive('\n').collect();
                    let nl: Vec<&str> = new.split_inclusive('\n').collect();
                    for (i, h) in r.hunks.iter().enumerate() {
                        want.push_str(&ol[at..h.old_start].concat());
                        want.push_str(&if kept.contains(&i) { nl[h.new_start..h.new_start + h.new_len].concat() } else { ol[h.old_start..h.old_start + h.old_len].concat() });
                        at = h.old_start + h.old_len;
                    }
                    want.push_str(&ol[at..].concat());
                    want.push_str("tail\n");
                    prop_assert_eq!(got, want);
                }
            }
        });
    }
}
