//! What the commands print: a table for people or stable JSON for scripts on standard output;
//! progress, warnings and errors on standard error. Colour only on a terminal, never with
//! `NO_COLOR`.

use std::io::IsTerminal;

use serde::Serialize;

use crate::cli::OutputFormat;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Table or JSON.
    pub format: OutputFormat,
    /// No progress and no warnings.
    pub quiet: bool,
    color_out: bool,
    color_err: bool,
}

#[cfg(feature = "server")]
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

impl Output {
    /// Output to the process's standard streams.
    pub fn new(format: OutputFormat, quiet: bool) -> Self {
        Self {
            format,
            quiet,
            color_out: colour_allowed() && std::io::stdout().is_terminal(),
            color_err: colour_allowed() && std::io::stderr().is_terminal(),
        }
    }

    /// Whether JSON was asked for.
    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    fn paint(enabled: bool, colour: &str, text: &str) -> String {
        if enabled {
            format!("{colour}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    /// Prints `value` as pretty JSON.
    pub fn json<T: Serialize>(&self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("error: could not print JSON: {error}"),
        }
    }

    /// Prints aligned `name  value` lines.
    pub fn fields(&self, fields: &[(&str, String)]) {
        for line in self.field_lines(fields) {
            println!("{line}");
        }
    }

    /// The lines [`Output::fields`] prints: names padded to the longest, in bold on a terminal.
    fn field_lines(&self, fields: &[(&str, String)]) -> Vec<String> {
        let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        fields
            .iter()
            .map(|(name, value)| {
                let padded = format!("{name:width$}");
                format!("{}  {value}", Self::paint(self.color_out, BOLD, &padded))
            })
            .collect()
    }

    /// Prints a table with a header row.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) {
        for line in self.table_lines(header, rows) {
            println!("{line}");
        }
    }

    /// The lines [`Output::table`] prints: columns as wide as their widest cell (in characters),
    /// two spaces apart, no trailing blanks, the header in bold on a terminal.
    fn table_lines(&self, header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    format!("{cell}{}", " ".repeat(pad))
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        let mut lines = vec![Self::paint(
            self.color_out,
            BOLD,
            &line(header.iter().map(|h| h.to_string()).collect()),
        )];
        lines.extend(rows.iter().map(|row| line(row.clone())));
        lines
    }

    /// A progress line on standard error.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// A step that held.
    #[cfg(feature = "server")]
    pub fn step_ok(&self, text: &str) {
        if !self.quiet {
            println!("{} {text}", Self::paint(self.color_out, GREEN, "✓"));
        }
    }

    /// A step that failed.
    #[cfg(feature = "server")]
    pub fn step_failed(&self, text: &str) {
        println!("{} {text}", Self::paint(self.color_out, RED, "✗"));
    }

    /// A warning on standard error.
    pub fn warn(&self, text: &str) {
        if !self.quiet {
            eprintln!("{} {text}", Self::paint(self.color_err, YELLOW, "warning:"));
        }
    }

    /// An error line on standard error (printed even when quiet).
    pub fn error(text: &str) {
        let colour = colour_allowed() && std::io::stderr().is_terminal();
        eprintln!("{} {text}", Self::paint(colour, RED, "error:"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Output {
        Output {
            format: OutputFormat::Table,
            quiet: false,
            color_out: false,
            color_err: false,
        }
    }

    #[test]
    fn table_columns_align_on_characters_and_lines_end_without_blanks() {
        let rows = vec![
            vec!["lmts_a".to_owned(), "bot".to_owned(), "trading".to_owned()],
            vec!["lmts_bb".to_owned(), "größe".to_owned(), String::new()],
        ];
        assert_eq!(
            plain().table_lines(&["ID", "LABEL", "SCOPES"], &rows),
            [
                "ID       LABEL  SCOPES",
                "lmts_a   bot    trading",
                "lmts_bb  größe",
            ]
        );
        assert_eq!(plain().table_lines(&["ID"], &[]), ["ID"]);
    }

    #[test]
    fn fields_pad_names_to_the_longest() {
        let lines = plain().field_lines(&[
            ("tokenId", "lmts_a".to_owned()),
            ("secret", "c2VjcmV0".to_owned()),
        ]);
        assert_eq!(lines, ["tokenId  lmts_a", "secret   c2VjcmV0"]);
    }

    #[test]
    fn colour_only_when_enabled() {
        let coloured = Output {
            color_out: true,
            ..plain()
        };
        assert_eq!(
            coloured.table_lines(&["ID"], &[vec!["x".to_owned()]]),
            ["\x1b[1mID\x1b[0m", "x"]
        );
        assert_eq!(
            coloured.field_lines(&[("a", "b".to_owned())]),
            ["\x1b[1ma\x1b[0m  b"]
        );
        assert!(!plain().table_lines(&["ID"], &[]).concat().contains('\x1b'));
        assert!(!Output {
            format: OutputFormat::Json,
            ..plain()
        }
        .table_lines(&["ID"], &[])
        .concat()
        .contains('\x1b'));
    }

    #[test]
    fn json_is_asked_for_by_the_format_only() {
        assert!(!plain().is_json());
        assert!(Output {
            format: OutputFormat::Json,
            quiet: true,
            ..plain()
        }
        .is_json());
    }
}
