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
        let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, value) in fields {
            let padded = format!("{name:width$}");
            println!("{}  {value}", Self::paint(self.color_out, BOLD, &padded));
        }
    }

    /// Prints a table with a header row.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) {
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
        println!(
            "{}",
            Self::paint(
                self.color_out,
                BOLD,
                &line(header.iter().map(|h| h.to_string()).collect())
            )
        );
        for row in rows {
            println!("{}", line(row.clone()));
        }
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
