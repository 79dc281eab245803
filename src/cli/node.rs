//! `gctr node`: its options and start-up.

use super::CliError;

pub fn run(_parser: &mut lexopt::Parser) -> Result<(), CliError> {
    Err(CliError::Usage("`node` is not built yet".into()))
}
