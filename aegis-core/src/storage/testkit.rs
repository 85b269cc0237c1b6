//! The contract every [`Storage`] backend must meet, as async checks that panic when a store
//! breaks it (enabled by the `testkit` cargo feature).
//!
//! A backend's tests call [`check_all`] on a new store, or single checks to narrow a failure:
//!
//! ```
//! use std::sync::Arc;
//! use aegis_core::{MemoryStorage, Storage};
//!
//! # #[tokio::main]
//! # async fn main() {
//! let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
//! aegis_core::storage::testkit::check_all(&store).await;
//! # }
//! ```
//!
//! Each check creates its own rows, so checks can share one store and run in any order. A
//! check first drains the queue: it claims every `created` run and finishes it as `stopped`,
//! and it leaves no `created` run behind. So nothing else may use the store while a check
//! runs (a running engine would claim the check's runs).
//!
//! The builders ([`task`], [`team`], [`session`], [`run_spec`], [`messages`]) fill every
//! field, so a check that compares a row read back with the row written covers every column.
//!
//! The checks run inside a Tokio runtime with its timer enabled (`#[tokio::test]` has both):
//! they sleep past short leases and spawn the tasks of [`check_concurrent_claims`].

// These checks are test code run by other crates' tests: a failed expectation is a panic.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, json};
use uuid::Uuid;

use crate::component::ComponentModel;
use crate::message::{AgentMessage, MessageKind, RequestUsage};
use crate::resource::{
    ErrorDetails, Run, RunSpec, RunStatus, RunTask, Session, Task, TaskMessageType, TaskResult, Team, TeamResult,
};
use crate::storage::{Lease, ListFilter, RunFilter, RunOutcome, Storage, StorageError, StorageErrorKind};
use crate::timestamp::Timestamp;

/// A lease long enough never to expire during a check.
const LONG_LEASE: Duration = Duration::from_secs(3600);

/// A lease that has expired once [`EXPIRY_WAIT`] has passed.
const SHORT_LEASE: Duration = Duration::from_millis(1);

/// The sleep after which a [`SHORT_LEASE`] has expired for a store that reads this machine's clock.
const EXPIRY_WAIT: Duration = Duration::from_millis(50);

/// Runs every check in turn.
pub async fn check_all(store: &Arc<dyn Storage>) {
    let shared = store.as_ref();
    check_tasks(shared).await;
    check_teams(shared).await;
    check_sessions(shared).await;
    check_runs(shared).await;
    check_claim_order(shared).await;
    check_claim_snapshot(shared).await;
    check_fencing(shared).await;
    check_finish(shared).await;
    check_messages(shared).await;
    check_requeue(shared).await;
    check_exhaustion(shared).await;
    check_concurrent_claims(store).await;
}

/// Builds a task with every field set.
pub fn task(name: &str) -> Task {
    let now = Timestamp::now();
    Task {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        description: Some(format!("the {name} task")),
        version: Some("1.0.0".to_owned()),
        created_by_user_id: Some("user-1".to_owned()),
        archived: false,
        created_at: now,
        updated_at: now,
    }
}

/// Builds a team whose component has a nested config and a key outside AutoGen's schema.
pub fn team(label: &str) -> Team {
    let now = Timestamp::now();
    let mut rest = Map::new();
    rest.insert("x-origin".to_owned(), json!({"tool": "testkit"}));
    let component = ComponentModel {
        provider: "autogen_agentchat.teams.RoundRobinGroupChat".to_owned(),
        component_type: Some("team".to_owned()),
        version: Some(json!(1)),
        component_version: Some(json!(1)),
        description: Some("a team for storage checks".to_owned()),
        label: Some(label.to_owned()),
        config: json!({"participants": [{"provider": "autogen_agentchat.agents.AssistantAgent", "config": {"name": "marker"}}]}),
        rest,
    };
    Team {
        id: Uuid::now_v7(),
        name: Some(label.to_owned()),
        description: Some("a team for storage checks".to_owned()),
        component,
        created_by_user_id: None,
        archived: true,
        created_at: now,
        updated_at: now,
    }
}

/// Builds a session of `task` and `team` with a `team_metadata` override.
pub fn session(task: &Task, team: &Team) -> Session {
    let now = Timestamp::now();
    let mut team_metadata = Map::new();
    team_metadata.insert("model".to_owned(), json!("gpt-4o"));
    Session {
        id: Uuid::now_v7(),
        task_id: task.id,
        team_id: team.id,
        name: Some("checks".to_owned()),
        created_by_user_id: Some("user-2".to_owned()),
        archived: false,
        team_metadata,
        created_at: now,
        updated_at: now,
    }
}

/// Builds a new `created` run of `session` (attempt 1, no messages) with its snapshots.
pub fn run_spec(session: &Session) -> RunSpec {
    let now = Timestamp::now();
    let run = Run {
        id: Uuid::now_v7(),
        session_id: session.id,
        task_id: session.task_id,
        run_task: RunTask {
            source: "user".to_owned(),
            content: json!({"question": "What is 2 + 2?", "answer": "4"}),
            message_type: TaskMessageType::Dict,
        },
        batch_mode: false,
        created_by_user_id: Some("user-3".to_owned()),
        archived: false,
        status: RunStatus::Created,
        attempt: 1,
        team_result: None,
        error_message: None,
        error_details: None,
        created_at: now,
        started_at: None,
        finished_at: None,
        estimated_completion_time: Some(now.saturating_add(Duration::from_secs(60))),
        messages: Vec::new(),
    };
    RunSpec { run, team_component: team("snapshot").component, team_metadata: session.team_metadata.clone() }
}

/// Builds messages of several kinds that use every field: token usage, metadata, object and
/// list content, type-specific fields and a type this version does not model.
pub fn messages() -> Vec<AgentMessage> {
    let text = AgentMessage::text("marker", "The answer is 4.")
        .with_usage(RequestUsage { prompt_tokens: 120, completion_tokens: 8 });

    let mut handoff = AgentMessage::new(MessageKind::HandoffMessage, "marker", json!("over to the checker"));
    handoff.extra.insert("target".to_owned(), json!("checker"));
    handoff.extra.insert("context".to_owned(), json!([]));

    let mut tool_calls = AgentMessage::new(
        MessageKind::ToolCallRequestEvent,
        "checker",
        json!([{"id": "call-1", "name": "grade", "arguments": "{\"score\": 1}"}]),
    );
    tool_calls.metadata.insert("phase".to_owned(), json!("grading"));

    let structured = AgentMessage::new(
        MessageKind::Other("StructuredMessage[Grade]".to_owned()),
        "checker",
        json!({"score": 1, "feedback": "correct"}),
    );

    vec![text, handoff, tool_calls, structured]
}

/// Claims every `created` run and finishes it as `stopped`, leaving the queue empty.
pub async fn drain(store: &dyn Storage) {
    while let Some((_, lease)) = store.claim_run("testkit-drain", LONG_LEASE).await.expect("claim_run while draining") {
        store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run while draining");
    }
}

/// Checks insert, get and list of tasks: equal round trip, newest first, `limit`, unknown
/// ids and duplicate ids.
pub async fn check_tasks(store: &dyn Storage) {
    let written = [task("first"), task("second"), task("third")];
    for row in &written {
        store.insert_task(row).await.expect("insert_task");
    }

    for row in &written {
        assert_eq!(store.get_task(row.id).await.expect("get_task").as_ref(), Some(row), "get_task of a stored task");
    }
    assert_eq!(store.get_task(Uuid::now_v7()).await.expect("get_task of an unknown id"), None);

    let all = store.list_tasks(&ListFilter::default()).await.expect("list_tasks");
    assert_eq!(ids(all.iter().take(3).map(|row| row.id)), ids(written.iter().rev().map(|row| row.id)), "newest first");
    let limited = store.list_tasks(&ListFilter { limit: Some(2) }).await.expect("list_tasks with a limit");
    assert_eq!(ids(limited.iter().map(|row| row.id)), ids(written.iter().rev().take(2).map(|row| row.id)), "limit 2");

    let duplicate = Task { name: "duplicate".to_owned(), ..written[0].clone() };
    assert_kind(store.insert_task(&duplicate).await, StorageErrorKind::Conflict, "insert_task of a duplicate id");
    assert_eq!(store.get_task(written[0].id).await.expect("get_task").as_ref(), Some(&written[0]), "after a conflict");
}

/// Checks insert, get and list of teams, as [`check_tasks`] does for tasks.
pub async fn check_teams(store: &dyn Storage) {
    let written = [team("first"), team("second"), team("third")];
    for row in &written {
        store.insert_team(row).await.expect("insert_team");
    }

    for row in &written {
        assert_eq!(store.get_team(row.id).await.expect("get_team").as_ref(), Some(row), "get_team of a stored team");
    }
    assert_eq!(store.get_team(Uuid::now_v7()).await.expect("get_team of an unknown id"), None);

    let all = store.list_teams(&ListFilter::default()).await.expect("list_teams");
    assert_eq!(ids(all.iter().take(3).map(|row| row.id)), ids(written.iter().rev().map(|row| row.id)), "newest first");
    let limited = store.list_teams(&ListFilter { limit: Some(2) }).await.expect("list_teams with a limit");
    assert_eq!(ids(limited.iter().map(|row| row.id)), ids(written.iter().rev().take(2).map(|row| row.id)), "limit 2");

    let duplicate = Team { name: Some("duplicate".to_owned()), ..written[0].clone() };
    assert_kind(store.insert_team(&duplicate).await, StorageErrorKind::Conflict, "insert_team of a duplicate id");
    assert_eq!(store.get_team(written[0].id).await.expect("get_team").as_ref(), Some(&written[0]), "after a conflict");
}

/// Checks insert, get and list of sessions, as [`check_tasks`] does for tasks.
pub async fn check_sessions(store: &dyn Storage) {
    let (task, team) = (task("sessions"), team("sessions"));
    let written = [session(&task, &team), session(&task, &team), session(&task, &team)];
    for row in &written {
        store.insert_session(row).await.expect("insert_session");
    }

    for row in &written {
        let read = store.get_session(row.id).await.expect("get_session");
        assert_eq!(read.as_ref(), Some(row), "get_session of a stored session");
    }
    assert_eq!(store.get_session(Uuid::now_v7()).await.expect("get_session of an unknown id"), None);

    let all = store.list_sessions(&ListFilter::default()).await.expect("list_sessions");
    assert_eq!(ids(all.iter().take(3).map(|row| row.id)), ids(written.iter().rev().map(|row| row.id)), "newest first");
    let limited = store.list_sessions(&ListFilter { limit: Some(2) }).await.expect("list_sessions with a limit");
    assert_eq!(ids(limited.iter().map(|row| row.id)), ids(written.iter().rev().take(2).map(|row| row.id)), "limit 2");

    let duplicate = Session { name: Some("duplicate".to_owned()), ..written[0].clone() };
    assert_kind(store.insert_session(&duplicate).await, StorageErrorKind::Conflict, "insert_session of a duplicate id");
    let read = store.get_session(written[0].id).await.expect("get_session");
    assert_eq!(read.as_ref(), Some(&written[0]), "after a conflict");
}

/// Checks insert, get and list of runs: equal round trip, the session filter, newest first,
/// `limit`, unknown ids and duplicate ids.
pub async fn check_runs(store: &dyn Storage) {
    drain(store).await;
    let (task, team) = (task("runs"), team("runs"));
    let (first_session, second_session) = (session(&task, &team), session(&task, &team));
    let written =
        [run_spec(&first_session), run_spec(&first_session), run_spec(&first_session), run_spec(&second_session)];
    for spec in &written {
        store.insert_run(spec).await.expect("insert_run");
    }

    for spec in &written {
        assert_eq!(
            store.get_run(spec.run.id).await.expect("get_run").as_ref(),
            Some(&spec.run),
            "get_run of a new run"
        );
    }
    assert_eq!(store.get_run(Uuid::now_v7()).await.expect("get_run of an unknown id"), None);

    let all = store.list_runs(&RunFilter::default()).await.expect("list_runs");
    let newest: Vec<Run> = written.iter().rev().map(|spec| spec.run.clone()).collect();
    assert_eq!(
        all.get(..4),
        Some(newest.as_slice()),
        "list_runs returns the newest runs first, equal to those written"
    );

    let of_first = store.list_runs(&RunFilter::session(first_session.id)).await.expect("list_runs of a session");
    assert_eq!(of_first, newest[1..].to_vec(), "list_runs of a session returns its runs only, newest first");
    let limited = RunFilter { session_id: Some(first_session.id), limit: Some(2) };
    let of_first = store.list_runs(&limited).await.expect("list_runs of a session with a limit");
    assert_eq!(of_first, newest[1..3].to_vec(), "list_runs of a session with limit 2");
    let of_unknown =
        store.list_runs(&RunFilter::session(Uuid::now_v7())).await.expect("list_runs of an unknown session");
    assert_eq!(of_unknown, Vec::<Run>::new(), "list_runs of a session without runs");

    let mut duplicate = written[0].clone();
    duplicate.run.created_by_user_id = Some("someone else".to_owned());
    assert_kind(store.insert_run(&duplicate).await, StorageErrorKind::Conflict, "insert_run of a duplicate id");
    let read = store.get_run(written[0].run.id).await.expect("get_run");
    assert_eq!(read.as_ref(), Some(&written[0].run), "after a conflict");

    drain(store).await;
}

/// Checks that claims take the oldest `created` run first and return `None` once the queue
/// is empty.
pub async fn check_claim_order(store: &dyn Storage) {
    drain(store).await;
    assert_eq!(store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").map(|(spec, _)| spec.run.id), None);

    let session = new_session(store).await;
    let written = [run_spec(&session), run_spec(&session), run_spec(&session)];
    for spec in &written {
        store.insert_run(spec).await.expect("insert_run");
    }

    let mut leases = Vec::new();
    for (index, spec) in written.iter().enumerate() {
        let (claimed, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");
        assert_eq!(claimed.run.id, spec.run.id, "claim {index} takes the oldest created run");
        leases.push(lease);
    }
    let empty = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run of an empty queue");
    assert_eq!(empty.map(|(spec, _)| spec.run.id), None, "claim_run once every run is active");

    for lease in &leases {
        store.finish_run(lease, &stopped_outcome()).await.expect("finish_run");
    }
}

/// Checks what a claim returns and stores: the run as `active` with `started_at`, its
/// snapshots, and a lease for the owner on attempt 1.
pub async fn check_claim_snapshot(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let written = run_spec(&session);
    store.insert_run(&written).await.expect("insert_run");

    let (claimed, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");

    let started_at = claimed.run.started_at.expect("a claimed run has started_at");
    let expected = Run { status: RunStatus::Active, started_at: Some(started_at), ..written.run.clone() };
    assert_eq!(claimed.run, expected, "the claimed run is the stored run, now active");
    assert_eq!(claimed.team_component, written.team_component, "the team component snapshot");
    assert_eq!(claimed.team_metadata, written.team_metadata, "the team metadata snapshot");
    assert_eq!(lease.run_id, written.run.id);
    assert_eq!(lease.owner, "owner-a");
    assert_eq!(lease.attempt, 1);
    assert!(lease.expires_at > started_at, "the lease expires after the claim");
    let stored = store.get_run(written.run.id).await.expect("get_run");
    assert_eq!(stored.as_ref(), Some(&expected), "get_run of a claimed run");

    let renewed = store.renew_lease(&lease, LONG_LEASE * 2).await.expect("renew_lease");
    assert!(renewed.expires_at > lease.expires_at, "renew_lease moves the expiry later");
    assert_eq!(Lease { expires_at: lease.expires_at, ..renewed.clone() }, lease, "renew_lease changes the expiry only");

    store.finish_run(&renewed, &stopped_outcome()).await.expect("finish_run");
}

/// Checks fencing: a write naming the wrong owner, the wrong attempt or an unknown run gets
/// `LeaseLost` and changes nothing, and a finished run takes no more writes or claims.
pub async fn check_fencing(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let written = run_spec(&session);
    store.insert_run(&written).await.expect("insert_run");
    let (_, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    let message = AgentMessage::text("marker", "fenced");

    let stale = [
        ("another owner", Lease { owner: "owner-b".to_owned(), ..lease.clone() }),
        ("another attempt", Lease { attempt: lease.attempt + 1, ..lease.clone() }),
        ("an unknown run", Lease { run_id: Uuid::now_v7(), ..lease.clone() }),
    ];
    for (case, stale) in &stale {
        assert_kind(
            store.append_message(stale, &message).await,
            StorageErrorKind::LeaseLost,
            &format!("append_message with {case}"),
        );
        assert_kind(
            store.renew_lease(stale, LONG_LEASE).await,
            StorageErrorKind::LeaseLost,
            &format!("renew_lease with {case}"),
        );
        assert_kind(
            store.finish_run(stale, &stopped_outcome()).await,
            StorageErrorKind::LeaseLost,
            &format!("finish_run with {case}"),
        );
    }

    let run = store.get_run(written.run.id).await.expect("get_run").expect("the run");
    assert_eq!(run.status, RunStatus::Active, "rejected writes leave the run active");
    assert_eq!(run.messages, Vec::new(), "rejected appends store no message");
    assert_eq!(run.finished_at, None, "a rejected finish stores no end");

    store.append_message(&lease, &message).await.expect("append_message under the held lease");
    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run under the held lease");

    assert_kind(
        store.append_message(&lease, &message).await,
        StorageErrorKind::LeaseLost,
        "append_message after finish",
    );
    assert_kind(store.renew_lease(&lease, LONG_LEASE).await, StorageErrorKind::LeaseLost, "renew_lease after finish");
    assert_kind(
        store.finish_run(&lease, &stopped_outcome()).await,
        StorageErrorKind::LeaseLost,
        "finish_run after finish",
    );
    let claimed = store.claim_run("owner-b", LONG_LEASE).await.expect("claim_run");
    assert_eq!(claimed.map(|(spec, _)| spec.run.id), None, "a finished run is not claimed again");

    let run = store.get_run(written.run.id).await.expect("get_run").expect("the run");
    assert_eq!(run.status, RunStatus::Stopped, "writes after the finish change nothing");
    assert_eq!(run.messages, vec![message], "writes after the finish add no message");
}

/// Checks that `finish_run` stores the outcome for both a failure and a success: status,
/// result, error fields and `finished_at`, and clears `estimated_completion_time`.
pub async fn check_finish(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let (failing, completing) = (run_spec(&session), run_spec(&session));
    store.insert_run(&failing).await.expect("insert_run");
    store.insert_run(&completing).await.expect("insert_run");

    let partial = TeamResult {
        task_result: Some(TaskResult { messages: messages()[..1].to_vec(), stop_reason: None }),
        usage: RequestUsage { prompt_tokens: 120, completion_tokens: 8 },
        duration: 2.5,
    };
    let details = ErrorDetails {
        error_type: "RateLimitError".to_owned(),
        message: "rate limit reached".to_owned(),
        status_code: Some(429),
        llm_provider: Some("openai".to_owned()),
        model: Some("gpt-4o".to_owned()),
        attempts: 4,
    };
    let failure =
        RunOutcome::error(Some(partial.clone()), "RateLimitError: rate limit reached".to_owned(), details.clone());
    let success = RunOutcome::complete(TeamResult {
        task_result: Some(TaskResult {
            messages: messages(),
            stop_reason: Some("Text 'TERMINATE' mentioned".to_owned()),
        }),
        usage: RequestUsage { prompt_tokens: 300, completion_tokens: 40 },
        duration: 7.25,
    });

    for (spec, outcome) in [(&failing, &failure), (&completing, &success)] {
        let (claimed, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");
        assert_eq!(claimed.run.id, spec.run.id, "claims follow creation order");
        store.finish_run(&lease, outcome).await.expect("finish_run");

        let run = store.get_run(spec.run.id).await.expect("get_run").expect("the run");
        let expected = Run {
            status: outcome.status.clone(),
            started_at: claimed.run.started_at,
            team_result: outcome.team_result.clone(),
            error_message: outcome.error_message.clone(),
            error_details: outcome.error_details.clone(),
            finished_at: Some(outcome.finished_at),
            estimated_completion_time: None,
            ..spec.run.clone()
        };
        assert_eq!(run, expected, "a finished run has its outcome and keeps its other fields");
    }
}

/// Checks that messages read back in append order with every field equal, from `get_run`
/// and `list_runs`, before and after the run finishes.
pub async fn check_messages(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let written = run_spec(&session);
    store.insert_run(&written).await.expect("insert_run");
    let (_, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");

    let appended = messages();
    for message in &appended {
        store.append_message(&lease, message).await.expect("append_message");
    }

    let run = store.get_run(written.run.id).await.expect("get_run").expect("the run");
    assert_eq!(run.messages, appended, "get_run returns the messages in append order");
    let listed = store.list_runs(&RunFilter::session(session.id)).await.expect("list_runs");
    assert_eq!(listed.len(), 1, "the session has one run");
    assert_eq!(listed[0].messages, appended, "list_runs returns the messages in append order");

    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");
    let run = store.get_run(written.run.id).await.expect("get_run").expect("the run");
    assert_eq!(run.messages, appended, "a finished run keeps its messages");
}

/// Checks the re-queue of an expired lease: the run goes back to `created` with the next
/// attempt and without the abandoned attempt's messages, the old lease is dead, and the run
/// can be claimed again. Runs whose lease is still valid (or was renewed) stay active.
pub async fn check_requeue(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let (expiring, held, renewed) = (run_spec(&session), run_spec(&session), run_spec(&session));
    for spec in [&expiring, &held, &renewed] {
        store.insert_run(spec).await.expect("insert_run");
    }
    let (_, old_lease) = store.claim_run("owner-a", SHORT_LEASE).await.expect("claim_run").expect("a queued run");
    let (_, held_lease) = store.claim_run("owner-b", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    let (_, short_lease) = store.claim_run("owner-c", SHORT_LEASE).await.expect("claim_run").expect("a queued run");
    let renewed_lease = store.renew_lease(&short_lease, LONG_LEASE).await.expect("renew_lease");
    for message in messages() {
        store.append_message(&old_lease, &message).await.expect("append_message");
    }

    tokio::time::sleep(EXPIRY_WAIT).await;
    let report = store.requeue_expired(3).await.expect("requeue_expired");

    assert!(report.requeued.contains(&expiring.run.id), "the expired run is re-queued: {report:?}");
    assert!(!report.requeued.contains(&held.run.id), "a run with a valid lease stays active: {report:?}");
    assert!(!report.requeued.contains(&renewed.run.id), "a run whose lease was renewed stays active: {report:?}");
    assert!(!report.exhausted.contains(&expiring.run.id), "a run on its first attempt is not exhausted: {report:?}");

    let run = store.get_run(expiring.run.id).await.expect("get_run").expect("the run");
    assert_eq!(run.status, RunStatus::Created, "a re-queued run is created again");
    assert_eq!(run.attempt, 2, "a re-queued run gets the next attempt");
    assert_eq!(run.started_at, None, "a re-queued run has not started");
    assert_eq!(run.messages, Vec::new(), "the abandoned attempt's messages are dropped");

    let late = AgentMessage::text("marker", "written after the lease expired");
    assert_kind(
        store.append_message(&old_lease, &late).await,
        StorageErrorKind::LeaseLost,
        "append_message under the old lease",
    );
    assert_kind(
        store.renew_lease(&old_lease, LONG_LEASE).await,
        StorageErrorKind::LeaseLost,
        "renew_lease of the old lease",
    );
    assert_kind(
        store.finish_run(&old_lease, &stopped_outcome()).await,
        StorageErrorKind::LeaseLost,
        "finish_run under the old lease",
    );

    let (claimed, new_lease) =
        store.claim_run("owner-d", LONG_LEASE).await.expect("claim_run").expect("the re-queued run");
    assert_eq!(claimed.run.id, expiring.run.id, "the re-queued run is claimable again");
    assert_eq!(claimed.run.attempt, 2, "the claimed run is on its second attempt");
    assert_eq!(new_lease.attempt, 2, "the new lease fences with the second attempt");
    assert_eq!(claimed.run.messages, Vec::new(), "the second attempt starts without messages");

    let message = AgentMessage::text("marker", "second attempt");
    store.append_message(&new_lease, &message).await.expect("append_message under the new lease");
    let run = store.get_run(expiring.run.id).await.expect("get_run").expect("the run");
    assert_eq!(run.messages, vec![message], "only the current attempt's messages are returned");

    for lease in [&new_lease, &held_lease, &renewed_lease] {
        store.finish_run(lease, &stopped_outcome()).await.expect("finish_run");
    }
}

/// Checks that a run whose lease expires on its last attempt ends as `error` with a
/// `RunInterruptedError`, without messages, and is not claimed again.
pub async fn check_exhaustion(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let written = run_spec(&session);
    store.insert_run(&written).await.expect("insert_run");
    let max_attempts = 2;

    let mut last_lease = None;
    for attempt in 1..=max_attempts {
        let (claimed, lease) = store.claim_run("owner-a", SHORT_LEASE).await.expect("claim_run").expect("a queued run");
        assert_eq!(claimed.run.id, written.run.id);
        assert_eq!(lease.attempt, attempt, "each claim gets the next attempt");
        store.append_message(&lease, &AgentMessage::text("marker", "interrupted")).await.expect("append_message");

        tokio::time::sleep(EXPIRY_WAIT).await;
        let report = store.requeue_expired(max_attempts).await.expect("requeue_expired");
        let (requeued, exhausted) =
            (report.requeued.contains(&written.run.id), report.exhausted.contains(&written.run.id));
        assert_eq!(requeued, attempt < max_attempts, "attempt {attempt} of {max_attempts} is re-queued: {report:?}");
        assert_eq!(exhausted, attempt == max_attempts, "attempt {attempt} of {max_attempts} is exhausted: {report:?}");
        last_lease = Some(lease);
    }

    let run = store.get_run(written.run.id).await.expect("get_run").expect("the run");
    assert_eq!(run.status, RunStatus::Error, "an exhausted run ends as error");
    assert_eq!(run.attempt, max_attempts, "an exhausted run keeps its last attempt");
    let details = run.error_details.as_ref().expect("an exhausted run has error_details");
    assert_eq!(details.error_type, "RunInterruptedError");
    assert_eq!(details.attempts, max_attempts, "error_details counts the attempts");
    let error_message = run.error_message.as_deref().unwrap_or_default();
    assert!(error_message.starts_with("RunInterruptedError: "), "error_message names the type: {error_message:?}");
    assert!(run.finished_at.is_some(), "an exhausted run has finished_at");
    assert_eq!(run.estimated_completion_time, None, "an exhausted run has no estimated completion");
    assert_eq!(run.messages, Vec::new(), "an exhausted run drops the last attempt's messages");

    let claimed = store.claim_run("owner-b", LONG_LEASE).await.expect("claim_run");
    assert_eq!(claimed.map(|(spec, _)| spec.run.id), None, "an exhausted run is not claimed again");
    let lease = last_lease.expect("the loop ran");
    assert_kind(
        store.finish_run(&lease, &stopped_outcome()).await,
        StorageErrorKind::LeaseLost,
        "finish_run after exhaustion",
    );
}

/// Checks that claims from many tasks at once never hand one run to two owners and together
/// take every queued run.
pub async fn check_concurrent_claims(store: &Arc<dyn Storage>) {
    const RUNS: usize = 40;
    const CLAIMERS: usize = 8;

    drain(store.as_ref()).await;
    let session = new_session(store.as_ref()).await;
    let written: Vec<RunSpec> = (0..RUNS).map(|_| run_spec(&session)).collect();
    for spec in &written {
        store.insert_run(spec).await.expect("insert_run");
    }

    let mut claimers = Vec::new();
    for claimer in 0..CLAIMERS {
        let store = Arc::clone(store);
        claimers.push(tokio::spawn(async move {
            let owner = format!("owner-{claimer}");
            let mut leases = Vec::new();
            while let Some((_, lease)) = store.claim_run(&owner, LONG_LEASE).await.expect("claim_run") {
                leases.push(lease);
                tokio::task::yield_now().await;
            }
            leases
        }));
    }
    let mut leases = Vec::new();
    for claimer in claimers {
        leases.extend(claimer.await.expect("a claiming task panicked"));
    }

    let claimed: HashSet<Uuid> = leases.iter().map(|lease| lease.run_id).collect();
    assert_eq!(leases.len(), RUNS, "every queued run is claimed exactly once");
    assert_eq!(claimed.len(), RUNS, "no run is claimed twice");
    let queued: HashSet<Uuid> = written.iter().map(|spec| spec.run.id).collect();
    assert_eq!(claimed, queued, "the claimed runs are the queued runs");

    // Only the owner that got the lease can write: every other owner's lease is stale.
    for lease in &leases {
        let other = Lease { owner: format!("{}-other", lease.owner), ..lease.clone() };
        assert_kind(
            store.renew_lease(&other, LONG_LEASE).await,
            StorageErrorKind::LeaseLost,
            "renew_lease by another owner",
        );
        store.finish_run(lease, &stopped_outcome()).await.expect("finish_run by the owner");
    }
}

async fn new_session(store: &dyn Storage) -> Session {
    let (task, team) = (task("queue"), team("queue"));
    let session = session(&task, &team);
    store.insert_task(&task).await.expect("insert_task");
    store.insert_team(&team).await.expect("insert_team");
    store.insert_session(&session).await.expect("insert_session");
    session
}

fn stopped_outcome() -> RunOutcome {
    RunOutcome {
        status: RunStatus::Stopped,
        team_result: None,
        error_message: None,
        error_details: None,
        finished_at: Timestamp::now(),
    }
}

fn ids(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    ids.collect()
}

#[track_caller]
fn assert_kind<T: Debug>(result: Result<T, StorageError>, expected: StorageErrorKind, operation: &str) {
    match result {
        Ok(value) => panic!("{operation}: expected a {expected:?} error, got Ok({value:?})"),
        Err(error) => assert_eq!(*error.kind(), expected, "{operation}: expected a {expected:?} error, got {error}"),
    }
}
