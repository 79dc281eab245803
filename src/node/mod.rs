//! The TCP node: transport, event loop and HTTP API around the engine.
