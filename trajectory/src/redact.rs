//! Secret redaction, applied to every text before it is written to the store.
//!
//! The patterns err on the side of redacting: a trajectory that lost a password-looking literal is
//! still good training data; a store that kept an API key is a leak.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex, RegexSet};

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

struct Rule {
    re: Regex,
    replace: fn(&Captures) -> String,
}

const PATTERNS: &[&str] = &[
    // 0: private key blocks (PEM, OpenSSH, PGP).
    r"-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY( BLOCK)?-----[\s\S]*?(-----END ([A-Z0-9 ]+ )?PRIVATE KEY( BLOCK)?-----|\z)",
    // 1: bearer tokens and Authorization headers.
    r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*|(authorization\s*:\s*(?:basic|token|digest)\s+)[^\s'`]+",
    // 2: API keys of well-known shapes.
    r"\b(?:sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_\-]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|(?:AKIA|ASIA)[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z\-_]{35}|hf_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9\-_]{20,}|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,})",
    // 3: `.env` style assignments: NAME_KEY=..., NAME_TOKEN=..., PASSWORD=...
    r#"\b([A-Z][A-Z0-9_]*)(\s*[=:]\s*)("[^"\n]*"|'[^'\n]*'|[^\s"'#,;]+)"#,
    // 4: keyed literals in code and config: "api_key": "...", password = '...'
    r#"(?i)(["']?)([a-z0-9_\-]*(?:api[_\-]?key|secret|token|passw(?:or)?d)[a-z0-9_\-]*)(["']?\s*[:=]\s*)(["'])([^"'\n]{4,})(["'])"#,
];

/// Words that make an upper-case variable name a secret when they are one of its `_`-separated parts.
const SECRET_WORDS: &[&str] =
    &["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PWD", "PASS", "CREDENTIAL", "CREDENTIALS", "APIKEY", "AUTH"];

fn secret_name(name: &str) -> bool {
    name.split('_').any(|part| SECRET_WORDS.contains(&part))
}

static SET: LazyLock<RegexSet> = LazyLock::new(|| RegexSet::new(PATTERNS).expect("redaction patterns compile"));

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let re = |i: usize| Regex::new(PATTERNS[i]).expect("redaction pattern compiles");
    vec![
        Rule { re: re(0), replace: |_| "[REDACTED PRIVATE KEY]".to_string() },
        Rule {
            re: re(1),
            replace: |c| {
                let prefix = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
                format!("{prefix}{REDACTED}")
            },
        },
        Rule { re: re(2), replace: |_| REDACTED.to_string() },
        Rule {
            re: re(3),
            replace: |c| {
                let name = &c[1];
                let value = &c[3];
                let is_reference = value.starts_with('$') || value.trim_matches(['"', '\'']).is_empty();
                if secret_name(name) && !is_reference && !value.contains(REDACTED) {
                    format!("{name}{}{REDACTED}", &c[2])
                } else {
                    c[0].to_string()
                }
            },
        },
        Rule {
            re: re(4),
            replace: |c| {
                if c[5].contains(REDACTED) || c[4] != c[6] {
                    return c[0].to_string();
                }
                format!("{}{}{}{}{REDACTED}{}", &c[1], &c[2], &c[3], &c[4], &c[6])
            },
        },
    ]
});

/// Redact the secrets in `text`; borrows when there are none (the common case).
pub fn redact(text: &str) -> Cow<'_, str> {
    let matches = SET.matches(text);
    if !matches.matched_any() {
        return Cow::Borrowed(text);
    }
    let mut out = Cow::Borrowed(text);
    for (i, rule) in RULES.iter().enumerate() {
        if matches.matched(i) {
            let replaced = rule.re.replace_all(&out, |c: &Captures| (rule.replace)(c)).into_owned();
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// Redact in place; returns whether anything changed.
pub fn redact_in_place(text: &mut String) -> bool {
    match redact(text) {
        Cow::Borrowed(_) => false,
        Cow::Owned(s) => {
            let changed = s != *text;
            *text = s;
            changed
        }
    }
}

/// Redact every string inside a JSON value.
pub fn redact_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            redact_in_place(s);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_value),
        serde_json::Value::Object(m) => m.values_mut().for_each(redact_value),
        _ => {}
    }
}
