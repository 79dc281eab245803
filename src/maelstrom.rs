//! The Maelstrom runtime: the engine over JSON messages on stdin and stdout.
