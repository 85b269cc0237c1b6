//! The four resources of the Aegis API: tasks, teams, sessions and runs.
//!
//! A [`Task`] is a catalogue entry (what to do), a [`Team`] contains AutoGen component JSON (who
//! does it), a [`Session`] links one task to one team and carries `team_metadata` overrides,
//! and a [`Run`] is one execution of the session's team on one `run_task`. Each resource has a
//! `New*` counterpart: the fields a caller supplies when creating it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::component::ComponentModel;
use crate::message::{AgentMessage, RequestUsage};
use crate::timestamp::Timestamp;

/// A catalogue entry that groups sessions and runs. It is never sent to a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    /// UUIDv7 identifier.
    pub id: Uuid,
    /// Display name; names need not be unique.
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
    /// Free-form version string, such as `1.0.0`.
    pub version: Option<String>,
    /// Free-form id of the user who created the task.
    pub created_by_user_id: Option<String>,
    /// Archived tasks stay readable but are hidden from default listings.
    #[serde(default)]
    pub archived: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last modification time.
    pub updated_at: Timestamp,
}

/// The fields of a task supplied by its creator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewTask {
    /// Display name.
    pub name: String,
    /// Free-form description.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form version string.
    #[serde(default)]
    pub version: Option<String>,
    /// Free-form id of the creating user.
    #[serde(default)]
    pub created_by_user_id: Option<String>,
    /// Whether the task starts archived.
    #[serde(default)]
    pub archived: bool,
}

impl NewTask {
    /// Starts a task description with only its name set.
    pub fn named(name: impl Into<String>) -> NewTask {
        NewTask { name: name.into(), ..NewTask::default() }
    }
}

/// A stored AutoGen team component (or a single agent, which runs as a one-agent team).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Team {
    /// UUIDv7 identifier.
    pub id: Uuid,
    /// Display name, by default the component's `label`.
    pub name: Option<String>,
    /// Free-form description, by default the component's `description`.
    pub description: Option<String>,
    /// The component JSON as given, unknown keys included.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub component: ComponentModel,
    /// Free-form id of the creating user.
    pub created_by_user_id: Option<String>,
    /// Archived teams stay readable but are hidden from default listings.
    #[serde(default)]
    pub archived: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last modification time.
    pub updated_at: Timestamp,
}

/// The fields of a team supplied by its creator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewTeam {
    /// The AutoGen component: a team, or an agent that becomes a one-agent team.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub component: ComponentModel,
    /// Display name; defaults to the component's `label`.
    #[serde(default)]
    pub name: Option<String>,
    /// Description; defaults to the component's `description`.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form id of the creating user.
    #[serde(default)]
    pub created_by_user_id: Option<String>,
    /// Whether the team starts archived.
    #[serde(default)]
    pub archived: bool,
}

impl NewTeam {
    /// Starts a team description from its component.
    pub fn from_component(component: ComponentModel) -> NewTeam {
        NewTeam { component, name: None, description: None, created_by_user_id: None, archived: false }
    }
}

/// A link between one task and one team, with per-session overrides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    /// UUIDv7 identifier.
    pub id: Uuid,
    /// The task this session works on.
    pub task_id: Uuid,
    /// The team that executes the session's runs.
    pub team_id: Uuid,
    /// Display name.
    pub name: Option<String>,
    /// Free-form id of the creating user.
    pub created_by_user_id: Option<String>,
    /// Archived sessions stay readable but are hidden from default listings.
    #[serde(default)]
    pub archived: bool,
    /// Overrides applied to the team of every run, such as `{"model": "gpt-4o"}`.
    #[serde(default)]
    pub team_metadata: Map<String, Value>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last modification time.
    pub updated_at: Timestamp,
}

/// The fields of a session supplied by its creator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewSession {
    /// The task the session works on.
    pub task_id: Uuid,
    /// The team that executes the session's runs.
    pub team_id: Uuid,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Free-form id of the creating user.
    #[serde(default)]
    pub created_by_user_id: Option<String>,
    /// Whether the session starts archived.
    #[serde(default)]
    pub archived: bool,
    /// Per-session overrides; see [`Session::team_metadata`].
    #[serde(default)]
    pub team_metadata: Map<String, Value>,
}

impl NewSession {
    /// Starts a session description linking `task_id` and `team_id`.
    pub fn new(task_id: Uuid, team_id: Uuid) -> NewSession {
        NewSession {
            task_id,
            team_id,
            name: None,
            created_by_user_id: None,
            archived: false,
            team_metadata: Map::new(),
        }
    }
}

crate::wire_enum! {
    /// The life-cycle state of a run, in AutoGen Studio's vocabulary.
    pub enum RunStatus {
        /// Accepted and durable, waiting for a worker.
        Created => "created",
        /// Claimed by a worker and executing.
        Active => "active",
        /// Finished normally.
        Complete => "complete",
        /// Finished with an error; see `error_message` and `error_details`.
        Error => "error",
        /// Cancelled before it finished.
        Stopped => "stopped",
    }
}

impl RunStatus {
    /// Returns whether the run can no longer change state.
    pub fn is_terminal(&self) -> bool {
        matches!(self, RunStatus::Complete | RunStatus::Error | RunStatus::Stopped)
    }
}

crate::wire_enum! {
    /// The reading of a run's `run_task.content`.
    pub enum TaskMessageType {
        /// `content` is a string, sent to the team as is.
        Text => "text",
        /// `content` is a JSON object, sent as Python's `json.dumps` text of it.
        Dict => "dict",
    }
}

/// The task message a run starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunTask {
    /// The message's `source`, as given.
    pub source: String,
    /// A string for `text`, an object for `dict`.
    pub content: Value,
    /// The reading of `content`.
    pub message_type: TaskMessageType,
}

/// The output of a team run: its messages and the reason it stopped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The messages the team produced, without the task message.
    pub messages: Vec<AgentMessage>,
    /// The reason the team stopped, or `null` when no termination condition fired.
    pub stop_reason: Option<String>,
}

/// The result of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamResult {
    /// The team's messages and stop reason; `null` only for batch runs.
    pub task_result: Option<TaskResult>,
    /// The result of every item of a batch run, in input order; absent for other runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<BatchItem>>,
    /// How many items of a batch run ended in each state; absent for other runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<BatchCounts>,
    /// Tokens summed over every model call of the run.
    #[serde(default)]
    pub usage: RequestUsage,
    /// Wall-clock seconds from the start of execution to its end.
    #[serde(default)]
    pub duration: f64,
}

/// The outcome of one item of a batch run: the team executed once on `run_task.content[index]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    /// Position of the item in `run_task.content`.
    pub index: usize,
    /// `complete` or `error`.
    pub status: RunStatus,
    /// The team's messages and stop reason for this item (partial when it failed).
    pub task_result: Option<TaskResult>,
    /// `<Type>: <message>` of a failed item.
    pub error_message: Option<String>,
    /// Structured facts about a failed item.
    pub error_details: Option<ErrorDetails>,
}

/// Item counts of a batch run by final status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Items that completed.
    pub complete: usize,
    /// Items that failed.
    pub error: usize,
}

/// Structured facts about a failed run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetails {
    /// The error class, such as `RateLimitError` or `ValueError`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// The error's message, without the type prefix.
    pub message: String,
    /// The provider's HTTP status, when the error came from a provider call.
    pub status_code: Option<u16>,
    /// The provider family, such as `openai`, when the error came from a provider call.
    pub llm_provider: Option<String>,
    /// The model name of the failed call.
    pub model: Option<String>,
    /// How many attempts the failed call made.
    #[serde(default = "one")]
    pub attempts: u32,
}

fn one() -> u32 {
    1
}

/// A run as the API returns it, already encoded as JSON, with the fields a caller needs to
/// decide about it without decoding the JSON.
///
/// Encoding a run and decoding it again cost more than the rest of a read. So a store that
/// keeps the final JSON of a terminal run hands it out as it is, and the HTTP layer writes it
/// into the response unchanged.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunDocument {
    /// The run's id.
    pub id: Uuid,
    /// The run's status when it was read.
    pub status: RunStatus,
    /// The user that created the run, for the visibility rules of API keys.
    pub created_by_user_id: Option<String>,
    /// The run as JSON text, as [`Run`] serializes: the messages included and
    /// `estimated_completion_time` set for the moment of the read.
    pub json: String,
}

impl RunDocument {
    /// Encodes `run` as it is now.
    pub fn encode(run: &Run) -> Result<RunDocument, serde_json::Error> {
        Ok(RunDocument {
            id: run.id,
            status: run.status.clone(),
            created_by_user_id: run.created_by_user_id.clone(),
            json: serde_json::to_string(run)?,
        })
    }

    /// Wraps JSON text that a store produced with [`Run`]'s encoding and kept. It is not
    /// checked again: checking would cost as much as the rest of the read, and a store
    /// only hands out text it wrote itself.
    pub fn from_stored(id: Uuid, status: RunStatus, created_by_user_id: Option<String>, json: String) -> RunDocument {
        RunDocument { id, status, created_by_user_id, json }
    }
}

/// One execution of a session's team on a task message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    /// UUIDv7 identifier.
    pub id: Uuid,
    /// The session the run belongs to.
    pub session_id: Uuid,
    /// The session's task.
    pub task_id: Uuid,
    /// The task message.
    pub run_task: RunTask,
    /// Whether `run_task.content` is a list of items, each run separately.
    pub batch_mode: bool,
    /// Free-form id of the creating user.
    pub created_by_user_id: Option<String>,
    /// Archived runs stay readable but are hidden from default listings.
    pub archived: bool,
    /// Life-cycle state.
    pub status: RunStatus,
    /// Execution attempt, starting at 1; a run re-queued after a crash gets the next one.
    pub attempt: u32,
    /// The result, once the run has ended (also partial results of failed runs).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub team_result: Option<TeamResult>,
    /// `<Type>: <message>` of a failed run.
    pub error_message: Option<String>,
    /// Structured facts about a failed run.
    pub error_details: Option<ErrorDetails>,
    /// Acceptance time.
    pub created_at: Timestamp,
    /// Start of the current attempt's execution.
    pub started_at: Option<Timestamp>,
    /// End of execution.
    pub finished_at: Option<Timestamp>,
    /// Estimated end of execution while the run is `created` or `active`; `null` once terminal.
    pub estimated_completion_time: Option<Timestamp>,
    /// The messages the team has produced so far, without the task message.
    pub messages: Vec<AgentMessage>,
}

/// The fields of a run supplied by its creator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewRun {
    /// The session to run in.
    pub session_id: Uuid,
    /// The session's task; it must match the session's `task_id`.
    pub task_id: Uuid,
    /// The task message.
    pub run_task: RunTask,
    /// Whether `run_task.content` is a list of items.
    #[serde(default)]
    pub batch_mode: bool,
    /// Free-form id of the creating user.
    #[serde(default)]
    pub created_by_user_id: Option<String>,
    /// Whether the run starts archived.
    #[serde(default)]
    pub archived: bool,
}

impl NewRun {
    /// Starts a run description for a text task.
    pub fn text(session_id: Uuid, task_id: Uuid, content: impl Into<String>) -> NewRun {
        NewRun {
            session_id,
            task_id,
            run_task: RunTask {
                source: "user".to_owned(),
                content: Value::String(content.into()),
                message_type: TaskMessageType::Text,
            },
            batch_mode: false,
            created_by_user_id: None,
            archived: false,
        }
    }

    /// Starts a run description for a dict task.
    pub fn dict(session_id: Uuid, task_id: Uuid, content: Map<String, Value>) -> NewRun {
        NewRun {
            run_task: RunTask {
                source: "user".to_owned(),
                content: Value::Object(content),
                message_type: TaskMessageType::Dict,
            },
            ..NewRun::text(session_id, task_id, "")
        }
    }
}

/// The input of a worker: the run plus the snapshots taken when it was accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    /// The run as accepted.
    pub run: Run,
    /// The team component as it was when the run was accepted. Shared, so a store that keeps
    /// specs in memory hands one out on every claim without a deep copy of the JSON.
    pub team_component: Arc<ComponentModel>,
    /// The session's `team_metadata` as it was when the run was accepted.
    pub team_metadata: Map<String, Value>,
    /// For a session whose `team_metadata.model` is `stub_error_sequence`: the position in the
    /// stub's error sequence this run took when it was accepted.
    pub stub_error_step: Option<u64>,
}

/// The fields of a task a `PATCH` may change; each absent (or `null`) field keeps its value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskPatch {
    /// New display name; must not be empty.
    #[serde(default)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New version string.
    #[serde(default)]
    pub version: Option<String>,
    /// Archive or restore the task.
    #[serde(default)]
    pub archived: Option<bool>,
}

/// The fields of a team a `PATCH` may change; each absent (or `null`) field keeps its value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamPatch {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New component, validated like a new team's. Secrets sent back masked keep their
    /// stored values.
    #[serde(default)]
    pub component: Option<Value>,
    /// Archive or restore the team.
    #[serde(default)]
    pub archived: Option<bool>,
}

/// The fields of a session a `PATCH` may change; each absent (or `null`) field keeps its
/// value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionPatch {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Archive or restore the session.
    #[serde(default)]
    pub archived: Option<bool>,
    /// New `team_metadata`, replacing the old one whole. Secrets sent back masked keep their
    /// stored values. Runs already accepted keep their snapshot.
    #[serde(default)]
    pub team_metadata: Option<Map<String, Value>>,
}

/// The field of a run a `PATCH` may change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunPatch {
    /// Archive or restore the run.
    #[serde(default)]
    pub archived: Option<bool>,
}
