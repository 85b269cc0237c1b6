//! The core of Aegis: run AutoGen-compatible multi-agent teams from their component JSON.
//!
//! - [`resource`]: the API's resources ([`Task`], [`Team`], [`Session`], [`Run`]).
//! - [`component`] and [`registry`]: AutoGen component JSON and the builders that turn it into
//!   [`agent`]s, [`team`]s, [`termination`] conditions, [`model`] clients and [`tool`]s.
//! - [`storage`]: the [`Storage`] trait (with an in-memory implementation) and its lease
//!   protocol.
//! - [`engine`] and [`Aegis`]: the worker pool that executes runs, and the service API on top.
//!
//! The engine does I/O only through [`Storage`] and [`ModelClient`]; nothing here serves HTTP.
//!
//! ```
//! use std::sync::Arc;
//! use aegis_core::{Aegis, EngineConfig, MemoryStorage, NewTask, ProviderEnv, Registry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let aegis = Aegis::new(
//!     Arc::new(MemoryStorage::new()),
//!     Registry::with_builtins(ProviderEnv::default()),
//!     EngineConfig::default(),
//! )?;
//! let task = aegis.create_task(NewTask::named("Automarking Task")).await?;
//! assert_eq!(aegis.get_task(task.id).await?.name, "Automarking Task");
//! # Ok(())
//! # }
//! ```

pub mod agent;
pub mod component;
pub mod engine;
pub mod error;
pub mod message;
pub mod model;
#[cfg(feature = "openapi")]
mod openapi;
pub mod pyjson;
pub mod pyrepr;
pub mod registry;
pub mod resource;
pub mod run;
pub mod secret;
mod service;
pub mod storage;
pub mod team;
pub mod telemetry;
pub mod termination;
pub mod timestamp;
pub mod tool;
mod wire;

pub use component::ComponentModel;
pub use engine::{EngineConfig, RunChanges, Workers};
pub use error::{Error, FieldError, ResourceKind};
pub use message::{AgentMessage, MessageKind, RequestUsage};
pub use model::{ModelClient, ModelError, ModelErrorKind, ProviderEnv};
pub use registry::Registry;
pub use resource::{
    BatchCounts, BatchItem, ErrorDetails, NewRun, NewSession, NewTask, NewTeam, Run, RunDocument, RunPatch, RunSpec,
    RunStatus, RunTask, Session, SessionPatch, Task, TaskMessageType, TaskPatch, TaskResult, Team, TeamPatch,
    TeamResult,
};
pub use run::{RunContext, RunError};
pub use service::{Aegis, IdempotentRequest, MAX_WAIT};
pub use storage::{MemoryStorage, Storage, StorageError};
pub use timestamp::Timestamp;
