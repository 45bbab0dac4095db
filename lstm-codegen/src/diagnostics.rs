//! The errors of a whole source file as data: each message with the line and column of the
//! token it points at, the same errors the macro reports as `compile_error!`s. They print
//! either briefly ([`Display`](std::fmt::Display): `3:25: unknown name …`) or as the compiler
//! would ([`Diagnostics::render`]), with the source line and a caret under the token.

use std::fmt;

use proc_macro2::Span;

/// Where in the source a diagnostic points: 1-based lines and columns (columns count
/// characters), the end exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

/// One error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// `None` for an error about the source as a whole.
    pub location: Option<Location>,
}

/// Every error found in a source, in source order within each cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics {
    diagnostics: Vec<Diagnostic>,
}

impl Diagnostics {
    /// One error about the source as a whole.
    pub(crate) fn message(message: impl Into<String>) -> Diagnostics {
        Diagnostics {
            diagnostics: vec![Diagnostic {
                message: message.into(),
                location: None,
            }],
        }
    }

    /// The errors of `error`, each located at its span, or at `fallback` when its span lies
    /// outside the source (the macro's own call site, or the standard LSTM's equations).
    pub(crate) fn from_syn(error: syn::Error, fallback: Option<Span>) -> Diagnostics {
        let diagnostics = error
            .into_iter()
            .map(|error| {
                let span = error.span();
                let span = match fallback {
                    Some(fallback) if span.join(fallback).is_none() => fallback,
                    _ => span,
                };
                Diagnostic {
                    message: error.to_string(),
                    location: Some(location(span)),
                }
            })
            .collect();
        Diagnostics { diagnostics }
    }

    pub(crate) fn extend(&mut self, other: Diagnostics) {
        self.diagnostics.extend(other.diagnostics);
    }

    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    pub(crate) fn none() -> Diagnostics {
        Diagnostics {
            diagnostics: Vec::new(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter()
    }

    pub fn len(&self) -> usize {
        self.diagnostics.len()
    }

    /// The errors as the compiler prints them, `path` naming the source:
    ///
    /// ```text
    /// error: unknown name `z_x`; expected z_i, z_f, …
    ///  --> src/cells.rs:3:25
    ///   |
    /// 3 | #[lstm_cell(f = sigmoid(z_x))]
    ///   |                         ^^^
    /// ```
    pub fn render(&self, path: &str, source: &str) -> String {
        let lines: Vec<&str> = source.lines().collect();
        let mut out = String::new();
        for (k, diagnostic) in self.diagnostics.iter().enumerate() {
            if k > 0 {
                out.push('\n');
            }
            out.push_str(&format!("error: {}\n", diagnostic.message));
            let Some(at) = diagnostic.location else {
                out.push_str(&format!(" --> {path}\n"));
                continue;
            };
            let number = at.line.to_string();
            let gutter = " ".repeat(number.len());
            out.push_str(&format!("{gutter}--> {path}:{}:{}\n", at.line, at.column));
            let Some(text) = lines.get(at.line - 1) else {
                continue;
            };
            let width = if at.end_line == at.line {
                at.end_column.saturating_sub(at.column).max(1)
            } else {
                text.chars().count().saturating_sub(at.column - 1).max(1)
            };
            out.push_str(&format!("{gutter} |\n{number} | {text}\n"));
            out.push_str(&format!(
                "{gutter} | {}{}\n",
                " ".repeat(at.column - 1),
                "^".repeat(width)
            ));
        }
        out
    }
}

/// A span's position, 1-based.
fn location(span: Span) -> Location {
    let (start, end) = (span.start(), span.end());
    Location {
        line: start.line,
        column: start.column + 1,
        end_line: end.line,
        end_column: end.column + 1,
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, diagnostic) in self.diagnostics.iter().enumerate() {
            if k > 0 {
                f.write_str("\n")?;
            }
            match diagnostic.location {
                Some(at) => write!(f, "{}:{}: {}", at.line, at.column, diagnostic.message)?,
                None => f.write_str(&diagnostic.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
