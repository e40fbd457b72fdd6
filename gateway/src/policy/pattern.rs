//! Policy strings: `*` (any run of characters, `/` included) and `?` (one character)
//! wildcards, and `${key}` policy variables substituted from the request.
//!
//! A string is parsed once into a [`Template`]; at evaluation it is expanded into a
//! [`Pattern`] where substituted text is always literal: a user named `a*` does not turn
//! `home/${aws:username}/*` into a wider pattern. `${*}`, `${?}` and `${$}` stand for the
//! literal characters, and `${key, 'default'}` gives a value for an absent key, as in IAM.

/// One element of an expanded pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    Char(char),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

pub type Pattern = Vec<Tok>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Policy text, where `*` and `?` are wildcards.
    Text(String),
    /// `${key}` or `${key, 'default'}`; `key` normalized.
    Var {
        key: String,
        default: Option<String>,
    },
    /// `${*}`, `${?}`, `${$}`.
    Literal(char),
}

/// A policy string with its variables located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `s`; with `variables` false (policy version 2008-10-17) `${...}` is plain text.
    pub fn parse(s: &str, variables: bool) -> Template {
        if !variables {
            return Template {
                pieces: vec![Piece::Text(s.to_owned())],
            };
        }
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            pieces.push(parse_variable(&rest[start + 2..start + len]));
            rest = &rest[start + len + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Template { pieces }
    }

    /// Whether it has no variable and no wildcard: it can only ever match itself.
    pub fn is_fixed(&self) -> bool {
        self.pieces.iter().all(|piece| match piece {
            Piece::Text(text) => !text.contains(['*', '?']),
            Piece::Var { .. } => false,
            Piece::Literal(_) => true,
        })
    }

    /// Expands variables with `lookup`; `None` when one has no value (and no default).
    pub fn expand(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Option<Pattern> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.extend(text.chars().map(wildcard_tok)),
                Piece::Literal(c) => out.push(Tok::Char(*c)),
                Piece::Var { key, default } => {
                    let value = lookup(key).or_else(|| default.clone())?;
                    out.extend(value.chars().map(Tok::Char));
                }
            }
        }
        Some(out)
    }

    /// Expands variables, reading `*` and `?` as plain characters (for `StringEquals`).
    pub fn expand_plain(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Literal(c) => out.push(*c),
                Piece::Var { key, default } => {
                    out.push_str(&lookup(key).or_else(|| default.clone())?);
                }
            }
        }
        Some(out)
    }
}

fn parse_variable(inner: &str) -> Piece {
    match inner.trim() {
        "*" => return Piece::Literal('*'),
        "?" => return Piece::Literal('?'),
        "$" => return Piece::Literal('$'),
        _ => {}
    }
    let (key, default) = match inner.split_once(',') {
        Some((key, default)) => {
            let default = default.trim();
            let unquoted = default
                .strip_prefix('\'')
                .and_then(|d| d.strip_suffix('\''))
                .unwrap_or(default);
            (key, Some(unquoted.to_owned()))
        }
        None => (inner, None),
    };
    Piece::Var {
        key: super::normalize_key(key.trim()),
        default,
    }
}

fn wildcard_tok(c: char) -> Tok {
    match c {
        '*' => Tok::Star,
        '?' => Tok::One,
        c => Tok::Char(c),
    }
}

/// Parses `s` with `*` and `?` as wildcards and no variables.
pub fn wildcard(s: &str) -> Pattern {
    s.chars().map(wildcard_tok).collect()
}

/// Whether `pattern` matches all of `text`. Linear backtracking over the last `*`: O(n * m)
/// at worst, never exponential.
pub fn matches(pattern: &[Tok], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` is in the pattern, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Tok::One) => (p, t) = (p + 1, t + 1),
            Some(Tok::Char(c)) if *c == text[t] => (p, t) = (p + 1, t + 1),
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    star = Some((star_p, star_t + 1));
                    (p, t) = (star_p + 1, star_t + 1);
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|tok| *tok == Tok::Star)
}
