//! Aegis: run AutoGen-compatible multi-agent LLM teams in production.
//!
//! This facade re-exports the workspace crates under one name:
//!
//! - [`core`]: resources, the component registry, model clients, agents, teams and the run
//!   engine, with the [`Storage`](core::Storage) and [`ModelClient`](core::ModelClient) traits.
//! - [`sqlite`]: the embedded SQLite store.
//! - [`http`]: the REST API, the server, and (with the `mock` feature, always on here) the
//!   OpenAI-compatible mock provider that examples, tests and benchmarks use.

pub use aegis_core as core;
pub use aegis_http as http;
pub use aegis_store_sqlite as sqlite;

pub use aegis_core::{Aegis, EngineConfig, MemoryStorage, ProviderEnv, Registry};
