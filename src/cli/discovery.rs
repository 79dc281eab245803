//! `gctr discovery`: its options and start-up.

use super::CliError;

pub fn run(_parser: &mut lexopt::Parser) -> Result<(), CliError> {
    Err(CliError::Usage("`discovery` is not built yet".into()))
}
