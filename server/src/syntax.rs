//! tree-sitter: which languages Keel understands, lazy incremental parsing, and the context sent to
//! the model (the enclosing function or class, the imports, nearby code) within a token budget.
//!
//! Typing never waits on a parse: a change only edits the old tree (`Tree::edit`) and marks it
//! stale; the parse happens when context is needed, off the main loop, reusing the edited tree.
//! `Tree::edit` walks the children of every node over the change, so it costs a file with many
//! top-level items time linear in their number per keystroke: above [`MAX_EDITED_TREE_BYTES`] the
//! tree is dropped at the first change instead, and the next parse starts afresh (off the main loop).

use tree_sitter::{InputEdit, Language, Node, Parser, Point, Tree};

use crate::document::Applied;

/// Files larger than this are not parsed (context falls back to nearby lines).
pub const MAX_PARSE_BYTES: usize = 4 * 1024 * 1024;

/// Trees of files larger than this are dropped on a change rather than edited.
pub const MAX_EDITED_TREE_BYTES: usize = 256 * 1024;

pub fn language(language_id: &str, uri: &str) -> Option<Language> {
    let ext = uri.rsplit('.').next().unwrap_or("");
    let id = match language_id {
        "" | "plaintext" => ext,
        other => other,
    };
    Some(match id {
        "rust" | "rs" => tree_sitter_rust::LANGUAGE.into(),
        "python" | "py" => tree_sitter_python::LANGUAGE.into(),
        "typescript" | "ts" | "javascript" | "js" | "mjs" | "cjs" => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
        "typescriptreact" | "tsx" | "javascriptreact" | "jsx" => tree_sitter_typescript::LANGUAGE_TSX.into(),
        "go" => tree_sitter_go::LANGUAGE.into(),
        "c" | "h" => tree_sitter_c::LANGUAGE.into(),
        _ => return None,
    })
}

/// A document's syntax tree, kept up to date lazily.
#[derive(Debug, Default, Clone)]
pub struct Syntax {
    /// The last tree, edited to match the current text when `stale`.
    pub tree: Option<Tree>,
    pub stale: bool,
}

impl Syntax {
    /// Records a text change (`len_bytes`: the document's size after it): the old tree is edited so
    /// the next parse can reuse it, or dropped when the document is large.
    pub fn edit(&mut self, a: &Applied, len_bytes: usize) {
        if len_bytes > MAX_EDITED_TREE_BYTES {
            self.tree = None;
        }
        if let Some(t) = self.tree.as_mut() {
            t.edit(&InputEdit {
                start_byte: a.start_byte,
                old_end_byte: a.old_end_byte,
                new_end_byte: a.new_end_byte,
                start_position: Point::new(a.start_point.0, a.start_point.1),
                old_end_position: Point::new(a.old_end_point.0, a.old_end_point.1),
                new_end_position: Point::new(a.new_end_point.0, a.new_end_point.1),
            });
        }
        self.stale = true;
    }
}

/// Parses `text` (incrementally from `old` when given). `None` for unknown languages and huge files.
pub fn parse(lang: &Language, text: &str, old: Option<&Tree>) -> Option<Tree> {
    if text.len() > MAX_PARSE_BYTES {
        return None;
    }
    let mut p = Parser::new();
    p.set_language(lang).ok()?;
    p.parse(text, old)
}

const DEFINITIONS: &[&str] = &[
    // Rust
    "function_item", "impl_item", "trait_item", "struct_item", "enum_item", "mod_item",
    // Python
    "function_definition", "class_definition",
    // TypeScript / JavaScript
    "function_declaration", "method_definition", "class_declaration", "arrow_function", "interface_declaration",
    // Go
    "method_declaration", "type_declaration",
    // C
    "struct_specifier",
];

const IMPORTS: &[&str] = &[
    "use_declaration", "extern_crate_declaration", // Rust
    "import_statement", "import_from_statement", "future_import_statement", // Python, TS
    "import_declaration", // Go
    "preproc_include", // C
];

/// What the model gets to see about the code around the task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub imports: Vec<String>,
    /// The innermost function, method or class around the range, with its first line number (1-based).
    pub enclosing: Option<(String, usize, String)>,
    /// Lines around the range, numbered (1-based), when no enclosing definition fits.
    pub nearby: Option<(usize, String)>,
}

/// Builds the context for a byte range of `text` within `budget_chars`.
pub fn context(text: &str, tree: Option<&Tree>, start_byte: usize, end_byte: usize, budget_chars: usize) -> Context {
    let start_byte = start_byte.min(text.len());
    let end_byte = end_byte.clamp(start_byte, text.len());
    let mut ctx = Context::default();
    let mut budget = budget_chars;
    if let Some(tree) = tree {
        let root = tree.root_node();
        let mut cursor = root.walk();
        for child in root.children(&mut cursor) {
            if IMPORTS.contains(&child.kind()) {
                let s = node_text(text, child);
                if s.len() + 1 > budget / 4 {
                    break;
                }
                budget -= s.len() + 1;
                ctx.imports.push(s.to_string());
            }
        }
        if let Some(mut n) = root.descendant_for_byte_range(start_byte, end_byte) {
            loop {
                if DEFINITIONS.contains(&n.kind()) {
                    let s = node_text(text, n);
                    if s.len() <= budget {
                        let line = n.start_position().row + 1;
                        ctx.enclosing = Some((n.kind().to_string(), line, s.to_string()));
                        return ctx;
                    }
                }
                match n.parent() {
                    Some(p) => n = p,
                    None => break,
                }
            }
        }
    }
    ctx.nearby = Some(nearby(text, start_byte, end_byte, budget));
    ctx
}

fn node_text<'a>(text: &'a str, n: Node) -> &'a str {
    text.get(n.start_byte()..n.end_byte()).unwrap_or("")
}

/// The lines around a byte range, widening one line at a time on each side while they fit.
fn nearby(text: &str, start: usize, end: usize, budget: usize) -> (usize, String) {
    let floor = |i: usize| {
        let mut i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let (start, end) = (floor(start), floor(end));
    let mut a = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let mut b = text[end..].find('\n').map_or(text.len(), |i| end + i);
    if b - a > budget {
        let b2 = floor(a + budget);
        return (text[..a].matches('\n').count() + 1, text[a..b2].to_string());
    }
    loop {
        let na = if a == 0 { 0 } else { text[..a - 1].rfind('\n').map_or(0, |i| i + 1) };
        let nb = if b >= text.len() { b } else { text[b + 1..].find('\n').map_or(text.len(), |i| b + 1 + i) };
        if (na == a && nb == b) || nb - na > budget {
            break;
        }
        a = na;
        b = nb;
    }
    (text[..a].matches('\n').count() + 1, text[a..b].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lang: &str, uri: &str, src: &str, cursor: &str, want_kind: &str, want_contains: &str) {
        let l = language(lang, uri).unwrap();
        let tree = parse(&l, src, None).unwrap();
        let at = src.find(cursor).unwrap();
        let ctx = context(src, Some(&tree), at, at + cursor.len(), 4000);
        let (kind, _, body) = ctx.enclosing.expect("an enclosing definition");
        assert_eq!(kind, want_kind);
        assert!(body.contains(want_contains));
    }

    #[test]
    fn enclosing_definitions_in_five_languages() {
        check("rust", "a.rs", "use std::io;\n\nfn add(a: i32) -> i32 {\n    a - 1\n}\n", "a - 1", "function_item", "fn add");
        check("python", "a.py", "import os\n\nclass C:\n    def f(self):\n        return 1\n", "return 1", "function_definition", "def f");
        check("typescript", "a.ts", "import x from 'y';\nfunction f(a: number) {\n  return a;\n}\n", "return a", "function_declaration", "function f");
        check("go", "a.go", "package m\n\nimport \"fmt\"\n\nfunc F() {\n\tfmt.Println(1)\n}\n", "Println", "function_declaration", "func F");
        check("c", "a.c", "#include <stdio.h>\nint f(void) {\n  return 2;\n}\n", "return 2", "function_definition", "int f");
    }

    #[test]
    fn imports_and_incremental_reparse() {
        let src = "use a::b;\nuse c::d;\n\nfn f() {}\n";
        let l = language("rust", "x.rs").unwrap();
        let mut syn = Syntax { tree: parse(&l, src, None), stale: false };
        let ctx = context(src, syn.tree.as_ref(), src.find("fn f").unwrap(), src.len(), 4000);
        assert_eq!(ctx.imports, vec!["use a::b;", "use c::d;"]);
        // Insert a function; the edited tree is reused by the next parse.
        let mut doc = crate::document::Document::new("x.rs", "rust", 0, src, Default::default());
        let ins = "fn g() { let z = 1; }\n";
        let applied = doc.apply(1, &[crate::document::Change { range: Some((crate::document::Pos { line: 3, character: 0 }, crate::document::Pos { line: 3, character: 0 })), text: ins.into() }]).unwrap();
        syn.edit(&applied[0], doc.text.len_bytes());
        assert!(syn.stale);
        assert!(syn.tree.is_some(), "a small file's tree is edited, not dropped");
        let text = doc.text.to_string();
        let tree = parse(&l, &text, syn.tree.as_ref()).unwrap();
        let at = text.find("let z").unwrap();
        let ctx = context(&text, Some(&tree), at, at, 4000);
        assert!(ctx.enclosing.unwrap().2.starts_with("fn g"));
    }

    #[test]
    fn budget_falls_back_to_nearby_lines() {
        let src = (1..=100).map(|i| format!("line {i}\n")).collect::<String>();
        let at = src.find("line 50").unwrap();
        let ctx = context(&src, None, at, at, 40);
        let (first, text) = ctx.nearby.unwrap();
        assert!(text.contains("line 50"));
        assert!(text.len() <= 40);
        assert!(first <= 50 && first >= 45, "{first}");
        assert!(language("cobol", "x.cbl").is_none());
    }
}
