//! `gctr maelstrom`: its options and start-up.

use super::CliError;

pub fn run(_parser: &mut lexopt::Parser) -> Result<(), CliError> {
    Err(CliError::Usage("`maelstrom` is not built yet".into()))
}
