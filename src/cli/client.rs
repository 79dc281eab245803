//! `gctr inc`, `gctr dec`, `gctr get`: the HTTP client commands.

use super::CliError;

#[derive(Clone, Copy, Debug)]
pub enum Command {
    Inc,
    Dec,
    Get,
}

pub fn run(cmd: Command, _parser: &mut lexopt::Parser) -> Result<(), CliError> {
    Err(CliError::Usage(format!("`{cmd:?}` is not built yet")))
}
