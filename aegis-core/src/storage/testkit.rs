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
    BatchItem, ErrorDetails, Run, RunSpec, RunStatus, RunTask, Session, Task, TaskMessageType, TaskResult, Team,
    TeamResult,
};
use crate::storage::{
    DeleteOutcome, DeleteTarget, Dependants, IdempotencyRecord, Lease, ListFilter, PageRequest, RunEventKind,
    RunFilter, RunOutcome, SortOrder, Storage, StorageError, StorageErrorKind, StoredRun,
};
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
    check_insert_claimed(shared).await;
    check_fencing(shared).await;
    check_finish(shared).await;
    check_messages(shared).await;
    check_run_documents(shared).await;
    check_requeue(shared).await;
    check_exhaustion(shared).await;
    check_concurrent_claims(store).await;
    check_cancel(shared).await;
    check_events(shared).await;
    check_release(shared).await;
    check_session_limits(shared).await;
    check_session_data(shared).await;
    check_idempotency_keys(shared).await;
    check_batch_items(shared).await;
    check_concurrent_counters(store).await;
    check_pages(shared).await;
    check_list_filters(shared).await;
    check_run_filters(shared).await;
    check_pages_under_inserts(store).await;
    check_updates(shared).await;
    check_deletes(shared).await;
    check_retention(shared).await;
    check_estimate_inputs(shared).await;
    check_token_usage(shared).await;
    check_ready_and_counts(shared).await;
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
    RunSpec {
        run,
        team_component: Arc::new(team("snapshot").component),
        team_metadata: session.team_metadata.clone(),
        stub_error_step: Some(7),
    }
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
    assert_eq!(
        ids(all.items.iter().take(3).map(|row| row.id)),
        ids(written.iter().rev().map(|row| row.id)),
        "newest first"
    );
    let limited = store.list_tasks(&ListFilter::first(2, SortOrder::Desc)).await.expect("list_tasks with a limit");
    assert_eq!(
        ids(limited.items.iter().map(|row| row.id)),
        ids(written.iter().rev().take(2).map(|row| row.id)),
        "limit 2"
    );
    assert!(limited.has_more(), "list_tasks with limit 2 of 3 or more rows has more");

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
    assert_eq!(
        ids(all.items.iter().take(3).map(|row| row.id)),
        ids(written.iter().rev().map(|row| row.id)),
        "newest first"
    );
    let limited = store.list_teams(&ListFilter::first(2, SortOrder::Desc)).await.expect("list_teams with a limit");
    assert_eq!(
        ids(limited.items.iter().map(|row| row.id)),
        ids(written.iter().rev().take(2).map(|row| row.id)),
        "limit 2"
    );
    assert!(limited.has_more(), "list_teams with limit 2 of 3 or more rows has more");

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
    assert_eq!(
        ids(all.items.iter().take(3).map(|row| row.id)),
        ids(written.iter().rev().map(|row| row.id)),
        "newest first"
    );
    let limited =
        store.list_sessions(&ListFilter::first(2, SortOrder::Desc)).await.expect("list_sessions with a limit");
    assert_eq!(
        ids(limited.items.iter().map(|row| row.id)),
        ids(written.iter().rev().take(2).map(|row| row.id)),
        "limit 2"
    );
    assert!(limited.has_more(), "list_sessions with limit 2 of 3 or more rows has more");

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
        all.items.get(..4),
        Some(newest.as_slice()),
        "list_runs returns the newest runs first, equal to those written"
    );

    let of_first = store.list_runs(&RunFilter::session(first_session.id)).await.expect("list_runs of a session");
    assert_eq!(of_first.items, newest[1..].to_vec(), "list_runs of a session returns its runs only, newest first");
    let mut limited = RunFilter::session(first_session.id);
    limited.page = PageRequest::first(2, SortOrder::Desc);
    let of_first = store.list_runs(&limited).await.expect("list_runs of a session with a limit");
    assert_eq!(of_first.items, newest[1..3].to_vec(), "list_runs of a session with limit 2");
    let of_unknown =
        store.list_runs(&RunFilter::session(Uuid::now_v7())).await.expect("list_runs of an unknown session");
    assert_eq!(of_unknown.items, Vec::<Run>::new(), "list_runs of a session without runs");
    assert!(!of_unknown.has_more(), "an empty listing has no more pages");

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
    assert_eq!(claimed.stub_error_step, written.stub_error_step, "the stub error step");
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

/// Checks [`Storage::insert_run_claimed`]. A store that claims stores the run `active` under
/// the given lease, with its `created` and `active` events, and leaves it out of the queue.
/// It declines while the run's session is at its limit or another run waits in the queue, and
/// a declined run is queued as `insert_run` would queue it. A store that always declines
/// passes once its declined run is queued.
pub async fn check_insert_claimed(store: &dyn Storage) {
    drain(store).await;
    let mut continued = new_session(store).await;
    continued.team_metadata.insert("continue_conversation".to_owned(), json!(true));
    let free = new_session(store).await;
    let started_at = Timestamp::now();
    let lease_of = |spec: &RunSpec| Lease {
        run_id: spec.run.id,
        owner: "owner-a".to_owned(),
        attempt: 1,
        expires_at: started_at.saturating_add(LONG_LEASE),
    };

    let first = run_spec(&continued);
    let first_lease = lease_of(&first);
    let claimed = store.insert_run_claimed(&first, &first_lease, started_at).await.expect("insert_run_claimed");
    if !claimed {
        let stored = store.get_run(first.run.id).await.expect("get_run");
        assert_eq!(stored.as_ref(), Some(&first.run), "a declined run is stored as insert_run stores it");
        drain(store).await;
        return;
    }
    let expected = Run { status: RunStatus::Active, started_at: Some(started_at), ..first.run.clone() };
    let stored = store.get_run(first.run.id).await.expect("get_run");
    assert_eq!(stored.as_ref(), Some(&expected), "a claimed run is stored active as of started_at");
    let events = store.list_run_events(first.run.id, 0, 100).await.expect("list_run_events");
    let kinds: Vec<RunEventKind> = events.into_iter().map(|event| event.kind).collect();
    let status = |status: RunStatus| RunEventKind::Status { status, attempt: 1 };
    assert_eq!(kinds, vec![status(RunStatus::Created), status(RunStatus::Active)], "the events of a claimed insert");
    assert_eq!(
        store.claim_run("owner-b", LONG_LEASE).await.expect("claim_run").map(|(spec, _)| spec.run.id),
        None,
        "a run claimed at its insert is not in the queue"
    );
    let renewed = store.renew_lease(&first_lease, LONG_LEASE * 2).await.expect("renew_lease of the insert's lease");

    let second = run_spec(&continued);
    let claimed = store.insert_run_claimed(&second, &lease_of(&second), started_at).await.expect("insert_run_claimed");
    assert!(!claimed, "the session allows one active run, so its second run waits");
    let third = run_spec(&free);
    let claimed = store.insert_run_claimed(&third, &lease_of(&third), started_at).await.expect("insert_run_claimed");
    assert!(!claimed, "a run waits in the queue, so a newer one may not pass it");
    for spec in [&second, &third] {
        let stored = store.get_run(spec.run.id).await.expect("get_run");
        assert_eq!(stored.as_ref(), Some(&spec.run), "a declined run is stored as insert_run stores it");
    }

    store.finish_run(&renewed, &stopped_outcome()).await.expect("finish_run");
    let (next, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("the queued run");
    assert_eq!(next.run.id, second.run.id, "the declined runs keep their order");
    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");
    drain(store).await;
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
        ..TeamResult::default()
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
        ..TeamResult::default()
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
    assert_eq!(listed.items.len(), 1, "the session has one run");
    assert_eq!(listed.items[0].messages, appended, "list_runs returns the messages in append order");

    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");
    let run = store.get_run(written.run.id).await.expect("get_run").expect("the run");
    assert_eq!(run.messages, appended, "a finished run keeps its messages");
}

/// Checks that a run read for a response matches `get_run` before it ends, once it ended with
/// messages, and after its `archived` flag changed. Only a terminal run may come as JSON,
/// because the service fills in the estimate of the others.
pub async fn check_run_documents(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let written = run_spec(&session);
    store.insert_run(&written).await.expect("insert_run");
    assert_document(store, written.run.id, session.id).await;

    let (_, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    for message in &messages() {
        store.append_message(&lease, message).await.expect("append_message");
    }
    assert_document(store, written.run.id, session.id).await;

    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");
    assert_document(store, written.run.id, session.id).await;

    store.set_run_archived(written.run.id, true).await.expect("set_run_archived").expect("the run");
    let archived = assert_document(store, written.run.id, session.id).await;
    assert!(archived.archived, "the document shows the new archived flag");
    assert!(store.get_run_document(Uuid::now_v7()).await.expect("get_run_document").is_none(), "unknown id");
}

/// Asserts that `get_run_document` and `list_run_documents` agree with `get_run`, and returns
/// the run.
async fn assert_document(store: &dyn Storage, id: Uuid, session_id: Uuid) -> Run {
    let run = store.get_run(id).await.expect("get_run").expect("the run");
    let stored = store.get_run_document(id).await.expect("get_run_document").expect("the run");
    check_stored_run(stored, &run);

    let listed = store.list_run_documents(&RunFilter::session(session_id)).await.expect("list_run_documents");
    assert_eq!(listed.items.len(), 1, "the session has one run");
    for stored in listed.items {
        check_stored_run(stored, &run);
    }
    run
}

fn check_stored_run(stored: StoredRun, run: &Run) {
    match stored {
        StoredRun::Encoded(document) => {
            assert!(run.status.is_terminal(), "only a terminal run comes encoded, not a {} one", run.status);
            let decoded: Run = serde_json::from_str(&document.json).expect("the document is a run");
            assert_eq!(&decoded, run, "the document is the run get_run reads");
            assert_eq!(document.id, run.id, "the document's id");
            assert_eq!(document.status, run.status, "the document's status");
            assert_eq!(document.created_by_user_id, run.created_by_user_id, "the document's creator");
        }
        StoredRun::Decoded(decoded) => assert_eq!(&*decoded, run, "the decoded run is the run get_run reads"),
    }
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

/// Checks cancellation. A `created` run ends `stopped` at once and is never claimed. An
/// `active` run gets a request that only its owner's [`Storage::cancel_requests`] lists, and
/// the first reason wins. A terminal run is unchanged. An expired run with a request ends
/// `stopped` with its messages instead of being re-queued.
pub async fn check_cancel(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let (queued, running, expiring) = (run_spec(&session), run_spec(&session), run_spec(&session));
    for spec in [&queued, &running, &expiring] {
        store.insert_run(spec).await.expect("insert_run");
    }
    assert_eq!(store.request_cancel(Uuid::now_v7(), "no such run").await.expect("request_cancel"), None);

    let cancelled =
        store.request_cancel(queued.run.id, "wrong rubric").await.expect("request_cancel").expect("the run");
    assert_eq!(cancelled.status, RunStatus::Stopped, "a created run stops at once");
    let stop_reason = cancelled
        .team_result
        .as_ref()
        .and_then(|result| result.task_result.as_ref())
        .and_then(|task| task.stop_reason.clone());
    assert_eq!(stop_reason.as_deref(), Some("wrong rubric"), "the reason is the stop_reason");
    assert!(cancelled.finished_at.is_some(), "a cancelled run has finished_at");
    assert_eq!(store.get_run(queued.run.id).await.expect("get_run"), Some(cancelled.clone()), "the cancel is stored");

    let (claimed, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    assert_eq!(claimed.run.id, running.run.id, "a cancelled run is never claimed");
    let (_, expiring_lease) = store.claim_run("owner-b", SHORT_LEASE).await.expect("claim_run").expect("a queued run");

    let active = store.request_cancel(running.run.id, "first").await.expect("request_cancel").expect("the run");
    assert_eq!(active.status, RunStatus::Active, "an active run keeps running until its worker stops it");
    store.request_cancel(running.run.id, "second").await.expect("request_cancel");
    let requests = store.cancel_requests("owner-a").await.expect("cancel_requests");
    assert_eq!(requests, vec![(running.run.id, "first".to_owned())], "the owner sees the first reason");
    assert_eq!(
        store.cancel_requests("owner-c").await.expect("cancel_requests"),
        Vec::new(),
        "other owners see nothing"
    );

    let message = AgentMessage::text("marker", "before the cancel");
    store.append_message(&lease, &message).await.expect("append_message");
    store.finish_run(&lease, &RunOutcome::stopped("first", vec![message.clone()], None)).await.expect("finish_run");
    assert_eq!(
        store.cancel_requests("owner-a").await.expect("cancel_requests"),
        Vec::new(),
        "a finished run has no request"
    );
    let finished = store.get_run(running.run.id).await.expect("get_run").expect("the run");
    let again = store.request_cancel(running.run.id, "third").await.expect("request_cancel").expect("the run");
    assert_eq!(again, finished, "cancelling a terminal run changes nothing");

    store.append_message(&expiring_lease, &message).await.expect("append_message");
    store.request_cancel(expiring.run.id, "while its worker died").await.expect("request_cancel");
    tokio::time::sleep(EXPIRY_WAIT).await;
    let report = store.requeue_expired(3).await.expect("requeue_expired");
    assert!(report.stopped.contains(&expiring.run.id), "an expired run with a cancel request is stopped: {report:?}");
    assert!(!report.requeued.contains(&expiring.run.id), "it is not re-queued: {report:?}");
    let stopped = store.get_run(expiring.run.id).await.expect("get_run").expect("the run");
    assert_eq!(stopped.status, RunStatus::Stopped);
    let task_result = stopped.team_result.and_then(|result| result.task_result).expect("a task_result");
    assert_eq!(task_result.stop_reason.as_deref(), Some("while its worker died"));
    assert_eq!(task_result.messages, vec![message], "the stopped run keeps its messages");
}

/// Checks run events: a status event per status or attempt change and a message event per
/// message, numbered from 1 over the run's whole life (kept across a re-queue), with
/// `after` and `limit` paging.
pub async fn check_events(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let written = run_spec(&session);
    store.insert_run(&written).await.expect("insert_run");
    let (_, lease) = store.claim_run("owner-a", SHORT_LEASE).await.expect("claim_run").expect("a queued run");
    let appended = messages();
    for message in &appended[..2] {
        store.append_message(&lease, message).await.expect("append_message");
    }
    tokio::time::sleep(EXPIRY_WAIT).await;
    store.requeue_expired(3).await.expect("requeue_expired");
    let (_, lease) = store.claim_run("owner-b", LONG_LEASE).await.expect("claim_run").expect("the re-queued run");
    store.append_message(&lease, &appended[2]).await.expect("append_message");
    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");

    let status = |status: RunStatus, attempt: u32| RunEventKind::Status { status, attempt };
    let message =
        |attempt: u32, index: usize| RunEventKind::Message { attempt, message: Box::new(appended[index].clone()) };
    let expected = vec![
        status(RunStatus::Created, 1),
        status(RunStatus::Active, 1),
        message(1, 0),
        message(1, 1),
        status(RunStatus::Created, 2),
        status(RunStatus::Active, 2),
        message(2, 2),
        status(RunStatus::Stopped, 2),
    ];
    let events = store.list_run_events(written.run.id, 0, 100).await.expect("list_run_events");
    let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>(), "events are numbered from 1 without gaps");
    let kinds: Vec<RunEventKind> = events.into_iter().map(|event| event.kind).collect();
    assert_eq!(kinds, expected, "every change of the run is an event, across attempts");

    let page = store.list_run_events(written.run.id, 3, 2).await.expect("list_run_events");
    assert_eq!(page.iter().map(|event| event.seq).collect::<Vec<_>>(), vec![4, 5], "after 3, limit 2");
    let none = store.list_run_events(written.run.id, 8, 100).await.expect("list_run_events");
    assert_eq!(none, Vec::new(), "nothing after the last event");
    let unknown = store.list_run_events(Uuid::now_v7(), 0, 100).await.expect("list_run_events");
    assert_eq!(unknown, Vec::new(), "an unknown run has no events");
}

/// Checks that a released run is `created` again with the next attempt and no messages, and
/// that the released lease is dead.
pub async fn check_release(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let written = run_spec(&session);
    store.insert_run(&written).await.expect("insert_run");
    let (_, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    store.append_message(&lease, &messages()[0]).await.expect("append_message");

    store.release_run(&lease).await.expect("release_run");
    let run = store.get_run(written.run.id).await.expect("get_run").expect("the run");
    assert_eq!(run.status, RunStatus::Created, "a released run is queued again");
    assert_eq!(run.attempt, 2, "a released run gets the next attempt");
    assert_eq!(run.messages, Vec::new(), "the released attempt's messages are dropped");
    assert_kind(store.release_run(&lease).await, StorageErrorKind::LeaseLost, "release_run twice");
    assert_kind(
        store.finish_run(&lease, &stopped_outcome()).await,
        StorageErrorKind::LeaseLost,
        "finish_run after release",
    );

    let (claimed, lease) = store.claim_run("owner-b", LONG_LEASE).await.expect("claim_run").expect("the released run");
    assert_eq!(claimed.run.id, written.run.id);
    assert_eq!(lease.attempt, 2);
    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");
}

/// Checks per-session limits: `continue_conversation` runs one run of the session at a time
/// in creation order, `max_concurrent_runs` caps active runs, and other sessions' runs are
/// claimed past a blocked session.
pub async fn check_session_limits(store: &dyn Storage) {
    drain(store).await;
    let mut continued = new_session(store).await;
    continued.team_metadata.insert("continue_conversation".to_owned(), json!(true));
    let mut capped = new_session(store).await;
    capped.team_metadata.insert("max_concurrent_runs".to_owned(), json!(2));
    let free = new_session(store).await;

    let continued_runs = [run_spec(&continued), run_spec(&continued)];
    let capped_runs = [run_spec(&capped), run_spec(&capped), run_spec(&capped)];
    let free_run = run_spec(&free);
    for spec in continued_runs.iter().chain(&capped_runs).chain([&free_run]) {
        store.insert_run(spec).await.expect("insert_run");
    }

    let mut leases = Vec::new();
    while let Some((spec, lease)) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run") {
        leases.push((spec.run.id, lease));
    }
    let claimed: Vec<Uuid> = leases.iter().map(|(id, _)| *id).collect();
    let expected = vec![continued_runs[0].run.id, capped_runs[0].run.id, capped_runs[1].run.id, free_run.run.id];
    assert_eq!(claimed, expected, "each session's limit holds and other sessions go on");

    let (_, first_lease) = &leases[0];
    store.finish_run(first_lease, &stopped_outcome()).await.expect("finish_run");
    let (next, next_lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("the next run");
    assert_eq!(next.run.id, continued_runs[1].run.id, "the session's next run starts after the first ended");

    for (_, lease) in &leases[1..] {
        store.finish_run(lease, &stopped_outcome()).await.expect("finish_run");
    }
    store.finish_run(&next_lease, &stopped_outcome()).await.expect("finish_run");
    drain(store).await;
}

/// Checks session counters (from 0, per session and name, durable) and the session state a
/// finished run's outcome stores.
pub async fn check_session_data(store: &dyn Storage) {
    drain(store).await;
    let (first, second) = (new_session(store).await, new_session(store).await);
    for expected in 0..3 {
        assert_eq!(store.next_session_counter(first.id, "steps").await.expect("next_session_counter"), expected);
    }
    assert_eq!(store.next_session_counter(second.id, "steps").await.expect("next_session_counter"), 0, "per session");
    assert_eq!(store.next_session_counter(first.id, "other").await.expect("next_session_counter"), 0, "per name");

    assert_eq!(store.session_state(first.id).await.expect("session_state"), None, "no state before a run");
    let written = run_spec(&first);
    store.insert_run(&written).await.expect("insert_run");
    let (_, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    let state = json!({"type": "TeamState", "agent_states": {"marker": {"llm_context": {"messages": [1, 2]}}}});
    let mut outcome = RunOutcome::complete(TeamResult::default());
    outcome.session_state = Some(state.clone());
    store.finish_run(&lease, &outcome).await.expect("finish_run");
    assert_eq!(store.session_state(first.id).await.expect("session_state"), Some(state), "the run's state is kept");
    assert_eq!(store.session_state(second.id).await.expect("session_state"), None, "other sessions have none");
}

/// Checks idempotency keys: the first record wins per scope and key, whatever later records
/// carry, and scopes are separate.
pub async fn check_idempotency_keys(store: &dyn Storage) {
    let key = format!("key-{}", Uuid::now_v7());
    let first = IdempotencyRecord::new("POST /api/v1/run", &key, r#"{"a":1}"#, Uuid::now_v7());
    let stored = store.put_idempotency_key(&first).await.expect("put_idempotency_key");
    assert_eq!(stored.resource_id, first.resource_id, "a first use stores the record");
    assert_eq!(stored.request, first.request);

    let retry = IdempotencyRecord::new("POST /api/v1/run", &key, r#"{"a":2}"#, Uuid::now_v7());
    let stored = store.put_idempotency_key(&retry).await.expect("put_idempotency_key");
    assert_eq!(stored.resource_id, first.resource_id, "a later use returns the first record");
    assert_eq!(stored.request, first.request, "a later use returns the first request");

    let other_scope = IdempotencyRecord::new("POST /api/v1/task", &key, r#"{"a":1}"#, Uuid::now_v7());
    let stored = store.put_idempotency_key(&other_scope).await.expect("put_idempotency_key");
    assert_eq!(stored.resource_id, other_scope.resource_id, "scopes do not share keys");
}

/// Checks batch item results: stored under the lease, kept across a re-queue, replaced per
/// index, and rejected under a stale lease.
pub async fn check_batch_items(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let written = run_spec(&session);
    store.insert_run(&written).await.expect("insert_run");
    let (_, lease) = store.claim_run("owner-a", SHORT_LEASE).await.expect("claim_run").expect("a queued run");
    let sample = messages()[..1].to_vec();
    let item = |index: usize, status: RunStatus| BatchItem {
        index,
        status,
        task_result: Some(TaskResult { messages: sample.clone(), stop_reason: None }),
        error_message: None,
        error_details: None,
    };
    store.save_batch_item(&lease, &item(1, RunStatus::Complete)).await.expect("save_batch_item");
    store.save_batch_item(&lease, &item(0, RunStatus::Error)).await.expect("save_batch_item");
    store.save_batch_item(&lease, &item(0, RunStatus::Complete)).await.expect("save_batch_item again");

    tokio::time::sleep(EXPIRY_WAIT).await;
    store.requeue_expired(3).await.expect("requeue_expired");
    assert_kind(
        store.save_batch_item(&lease, &item(2, RunStatus::Complete)).await,
        StorageErrorKind::LeaseLost,
        "save_batch_item after re-queue",
    );

    let items = store.batch_items(written.run.id).await.expect("batch_items");
    assert_eq!(
        items,
        vec![item(0, RunStatus::Complete), item(1, RunStatus::Complete)],
        "items by index survive the re-queue"
    );
    assert_eq!(store.batch_items(Uuid::now_v7()).await.expect("batch_items"), Vec::new());
    drain(store).await;
}

/// Checks that concurrent callers of a session counter never get the same value.
pub async fn check_concurrent_counters(store: &Arc<dyn Storage>) {
    const CALLERS: u64 = 24;
    let session = new_session(store.as_ref()).await;
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            store.next_session_counter(session.id, "race").await.expect("next_session_counter")
        }));
    }
    let mut values = HashSet::new();
    for task in tasks {
        values.insert(task.await.expect("a counting task panicked"));
    }
    assert_eq!(values, (0..CALLERS).collect::<HashSet<u64>>(), "every caller got a different value");
}

/// Checks keyset pages of tasks in both orders: every row once, in order, `has_more` false
/// only on the last page, and rows that share a `created_at` ordered by id.
pub async fn check_pages(store: &dyn Storage) {
    let user = format!("pages-{}", Uuid::now_v7());
    let shared_time = Timestamp::now();
    let mut written = Vec::new();
    for index in 0..7 {
        let mut row = task(&format!("page {index}"));
        row.created_by_user_id = Some(user.clone());
        if index % 2 == 0 {
            row.created_at = shared_time;
        }
        store.insert_task(&row).await.expect("insert_task");
        written.push(row);
    }
    let mut expected: Vec<Uuid> = written.iter().map(|row| row.id).collect();
    expected.sort_by_key(|id| written.iter().find(|row| row.id == *id).map(|row| (row.created_at, row.id)));

    for order in [SortOrder::Asc, SortOrder::Desc] {
        let mut filter = ListFilter::first(3, order);
        filter.created_by_user_id = Some(user.clone());
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.list_tasks(&filter).await.expect("list_tasks page");
            pages += 1;
            seen.extend(page.items.iter().map(|row| row.id));
            let Some(cursor) = page.next_cursor else { break };
            assert_eq!(page.items.len(), 3, "{order:?}: a page before the last is full");
            assert_eq!(cursor.order, order, "{order:?}: the cursor carries the order");
            filter.page = PageRequest::after(3, cursor);
        }
        let mut want = expected.clone();
        if order == SortOrder::Desc {
            want.reverse();
        }
        assert_eq!(seen, want, "{order:?}: pages of 3 return every row once, in order");
        assert_eq!(pages, 3, "{order:?}: 7 rows make 3 pages of 3");
    }
}

/// Checks the filters of task, team and session listings: `archived` (hidden, only, both),
/// `created_by_user_id`, and a session's `task_id` and `team_id`.
pub async fn check_list_filters(store: &dyn Storage) {
    let user = format!("filters-{}", Uuid::now_v7());
    let mut shown = task("shown");
    shown.created_by_user_id = Some(user.clone());
    let archived = Task { id: Uuid::now_v7(), archived: true, ..shown.clone() };
    store.insert_task(&shown).await.expect("insert_task");
    store.insert_task(&archived).await.expect("insert_task");

    let mut filter = ListFilter::first(10, SortOrder::Desc);
    filter.created_by_user_id = Some(user.clone());
    let both = store.list_tasks(&filter).await.expect("list_tasks").items;
    assert_eq!(ids(both.iter().map(|row| row.id)), vec![archived.id, shown.id], "archived: None lists both");
    filter.archived = Some(false);
    let visible = store.list_tasks(&filter).await.expect("list_tasks").items;
    assert_eq!(ids(visible.iter().map(|row| row.id)), vec![shown.id], "archived: Some(false) hides archived tasks");
    filter.archived = Some(true);
    let only = store.list_tasks(&filter).await.expect("list_tasks").items;
    assert_eq!(ids(only.iter().map(|row| row.id)), vec![archived.id], "archived: Some(true) lists archived tasks only");

    let mut own_team = team("filters");
    own_team.created_by_user_id = Some(user.clone());
    own_team.archived = false;
    store.insert_team(&own_team).await.expect("insert_team");
    let mut team_filter = ListFilter::first(10, SortOrder::Desc);
    team_filter.created_by_user_id = Some(user.clone());
    team_filter.archived = Some(false);
    let teams = store.list_teams(&team_filter).await.expect("list_teams").items;
    assert_eq!(ids(teams.iter().map(|row| row.id)), vec![own_team.id], "teams by created_by_user_id");

    let other_team = team("other filters");
    store.insert_team(&other_team).await.expect("insert_team");
    let of_team = session(&shown, &own_team);
    let of_other_team = session(&shown, &other_team);
    let of_other_task = session(&archived, &own_team);
    for row in [&of_team, &of_other_team, &of_other_task] {
        store.insert_session(row).await.expect("insert_session");
    }
    let mut by_task = ListFilter::first(10, SortOrder::Asc);
    by_task.task_id = Some(shown.id);
    let sessions = store.list_sessions(&by_task).await.expect("list_sessions by task").items;
    assert_eq!(ids(sessions.iter().map(|row| row.id)), vec![of_team.id, of_other_team.id], "sessions by task_id");
    let mut by_team = ListFilter::first(10, SortOrder::Asc);
    by_team.team_id = Some(own_team.id);
    let sessions = store.list_sessions(&by_team).await.expect("list_sessions by team").items;
    assert_eq!(ids(sessions.iter().map(|row| row.id)), vec![of_team.id, of_other_task.id], "sessions by team_id");
    by_team.task_id = Some(archived.id);
    let sessions = store.list_sessions(&by_team).await.expect("list_sessions by task and team").items;
    assert_eq!(ids(sessions.iter().map(|row| row.id)), vec![of_other_task.id], "sessions by task_id and team_id");
}

/// Checks every run filter: session, task, status, user, archived and the created-at range.
pub async fn check_run_filters(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let other = new_session(store).await;
    let user = format!("runs-{}", Uuid::now_v7());

    let mut first = run_spec(&session);
    first.run.created_by_user_id = Some(user.clone());
    let mut archived = run_spec(&session);
    archived.run.archived = true;
    archived.run.created_at = first.run.created_at.saturating_add(Duration::from_millis(5));
    let mut of_other = run_spec(&other);
    of_other.run.created_at = first.run.created_at.saturating_add(Duration::from_millis(10));
    for spec in [&first, &archived, &of_other] {
        store.insert_run(spec).await.expect("insert_run");
    }
    let (_, lease) = store.claim_run("filters", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    assert_eq!(lease.run_id, first.run.id, "the oldest run is claimed first");

    let listed = |filter: RunFilter| async move {
        let page = store.list_runs(&filter).await.expect("list_runs");
        ids(page.items.iter().map(|run| run.id))
    };
    let scoped = |mut filter: RunFilter| {
        filter.created_after = Some(first.run.created_at);
        filter.page = PageRequest::first(10, SortOrder::Asc);
        filter
    };

    let mut by_task = scoped(RunFilter::default());
    by_task.task_id = Some(session.task_id);
    assert_eq!(listed(by_task).await, vec![first.run.id, archived.run.id], "runs by task_id");
    let mut by_status = scoped(RunFilter::session(session.id));
    by_status.status = Some(RunStatus::Active);
    assert_eq!(listed(by_status).await, vec![first.run.id], "runs by status");
    let mut by_user = scoped(RunFilter::default());
    by_user.created_by_user_id = Some(user.clone());
    assert_eq!(listed(by_user).await, vec![first.run.id], "runs by created_by_user_id");
    let mut by_archived = scoped(RunFilter::session(session.id));
    by_archived.archived = Some(true);
    assert_eq!(listed(by_archived).await, vec![archived.run.id], "archived runs only");
    let mut by_visible = scoped(RunFilter::session(session.id));
    by_visible.archived = Some(false);
    assert_eq!(listed(by_visible).await, vec![first.run.id], "runs not archived");
    let mut by_range = scoped(RunFilter::default());
    by_range.created_after = Some(archived.run.created_at);
    by_range.created_before = Some(of_other.run.created_at);
    assert_eq!(listed(by_range).await, vec![archived.run.id], "created_after is inclusive, created_before exclusive");
    let mut by_session = scoped(RunFilter::session(other.id));
    by_session.created_after = None;
    assert_eq!(listed(by_session).await, vec![of_other.run.id], "runs by session_id");

    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");
    drain(store).await;
}

/// Checks that walking pages while other tasks insert rows returns every row that existed
/// at the start exactly once, in both orders, for tasks and for runs.
pub async fn check_pages_under_inserts(store: &Arc<dyn Storage>) {
    const EXISTING: usize = 25;
    const INSERTED: usize = 25;
    drain(store.as_ref()).await;

    let user = format!("inserts-{}", Uuid::now_v7());
    let session = new_session(store.as_ref()).await;
    let mut existing_tasks = HashSet::new();
    let mut existing_runs = HashSet::new();
    for index in 0..EXISTING {
        let mut row = task(&format!("existing {index}"));
        row.created_by_user_id = Some(user.clone());
        store.insert_task(&row).await.expect("insert_task");
        existing_tasks.insert(row.id);
        let spec = run_spec(&session);
        store.insert_run(&spec).await.expect("insert_run");
        existing_runs.insert(spec.run.id);
    }

    for order in [SortOrder::Desc, SortOrder::Asc] {
        let writer = {
            let (store, user, session) = (Arc::clone(store), user.clone(), session.clone());
            tokio::spawn(async move {
                for index in 0..INSERTED {
                    let mut row = task(&format!("inserted {index}"));
                    row.created_by_user_id = Some(user.clone());
                    store.insert_task(&row).await.expect("insert_task while paging");
                    store.insert_run(&run_spec(&session)).await.expect("insert_run while paging");
                    tokio::task::yield_now().await;
                }
            })
        };

        let mut tasks_seen = Vec::new();
        let mut filter = ListFilter::first(4, order);
        filter.created_by_user_id = Some(user.clone());
        loop {
            let page = store.list_tasks(&filter).await.expect("list_tasks while inserting");
            tasks_seen.extend(page.items.iter().map(|row| row.id));
            let Some(cursor) = page.next_cursor else { break };
            filter.page = PageRequest::after(4, cursor);
            tokio::task::yield_now().await;
        }

        let mut runs_seen = Vec::new();
        let mut run_filter = RunFilter::session(session.id);
        run_filter.page = PageRequest::first(4, order);
        loop {
            let page = store.list_runs(&run_filter).await.expect("list_runs while inserting");
            runs_seen.extend(page.items.iter().map(|run| run.id));
            let Some(cursor) = page.next_cursor else { break };
            run_filter.page = PageRequest::after(4, cursor);
            tokio::task::yield_now().await;
        }
        writer.await.expect("the inserting task panicked");

        for (name, seen, existing) in [("tasks", &tasks_seen, &existing_tasks), ("runs", &runs_seen, &existing_runs)] {
            let unique: HashSet<Uuid> = seen.iter().copied().collect();
            assert_eq!(unique.len(), seen.len(), "{order:?}: no {name} row appears on two pages");
            let missing = existing.difference(&unique).count();
            assert_eq!(missing, 0, "{order:?}: every {name} row that existed before the walk is listed");
        }
    }
    drain(store.as_ref()).await;
}

/// Checks that updates replace rows and their filtered columns, and report unknown ids.
pub async fn check_updates(store: &dyn Storage) {
    let session = new_session(store).await;
    let mut task = store.get_task(session.task_id).await.expect("get_task").expect("the task");
    task.name = "renamed".to_owned();
    task.archived = true;
    assert!(store.update_task(&task).await.expect("update_task"), "update_task of a stored task");
    assert_eq!(store.get_task(task.id).await.expect("get_task"), Some(task.clone()), "the task after its update");
    let mut only_archived = ListFilter::first(100, SortOrder::Desc);
    only_archived.archived = Some(true);
    let archived = store.list_tasks(&only_archived).await.expect("list_tasks").items;
    assert!(archived.iter().any(|row| row.id == task.id), "an archived task is listed as archived");

    let mut team = store.get_team(session.team_id).await.expect("get_team").expect("the team");
    let component = store.get_team_component(team.id).await.expect("get_team_component");
    assert_eq!(component.as_deref(), Some(&team.component), "get_team_component is the team's component");
    team.name = Some("renamed".to_owned());
    team.component.label = Some("renamed component".to_owned());
    assert!(store.update_team(&team).await.expect("update_team"), "update_team of a stored team");
    let component = store.get_team_component(team.id).await.expect("get_team_component");
    assert_eq!(component.as_deref(), Some(&team.component), "get_team_component after an update");
    assert_eq!(store.get_team(team.id).await.expect("get_team"), Some(team), "the team after its update");
    let unknown = store.get_team_component(Uuid::now_v7()).await.expect("get_team_component of an unknown id");
    assert!(unknown.is_none(), "an unknown team has no component");

    let mut changed = session.clone();
    changed.team_metadata.insert("model".to_owned(), json!("gpt-4.1"));
    assert!(store.update_session(&changed).await.expect("update_session"), "update_session of a stored session");
    assert_eq!(
        store.get_session(session.id).await.expect("get_session"),
        Some(changed),
        "the session after its update"
    );

    let spec = run_spec(&session);
    store.insert_run(&spec).await.expect("insert_run");
    let run = store.set_run_archived(spec.run.id, true).await.expect("set_run_archived").expect("the run");
    assert!(run.archived, "set_run_archived returns the archived run");
    assert_eq!(
        store.get_run(spec.run.id).await.expect("get_run").map(|run| run.archived),
        Some(true),
        "the run reads archived"
    );
    let mut archived_runs = RunFilter::session(session.id);
    archived_runs.archived = Some(true);
    assert_eq!(store.list_runs(&archived_runs).await.expect("list_runs").items.len(), 1, "the run lists as archived");

    let unknown = Task { id: Uuid::now_v7(), ..task };
    assert!(!store.update_task(&unknown).await.expect("update_task of an unknown id"), "update_task of an unknown id");
    assert_eq!(store.set_run_archived(Uuid::now_v7(), true).await.expect("set_run_archived"), None, "unknown run");
    drain(store).await;
}

/// Checks deletes: dependants block them unless cascading, runs that are not terminal block
/// them always, and a deleted run takes its messages, events and idempotency keys along.
pub async fn check_deletes(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let spec = run_spec(&session);
    store.insert_run(&spec).await.expect("insert_run");
    let key = IdempotencyRecord::new("POST /api/v1/run", format!("key-{}", spec.run.id), "{}", spec.run.id);
    store.put_idempotency_key(&key).await.expect("put_idempotency_key");

    let blocked = store.delete(DeleteTarget::Task(session.task_id), false).await.expect("delete task");
    assert_eq!(
        blocked,
        DeleteOutcome::HasDependants(Dependants::new(vec![session.id], vec![spec.run.id])),
        "a used task"
    );
    let blocked = store.delete(DeleteTarget::Team(session.team_id), false).await.expect("delete team");
    assert_eq!(
        blocked,
        DeleteOutcome::HasDependants(Dependants::new(vec![session.id], vec![spec.run.id])),
        "a used team"
    );
    let blocked = store.delete(DeleteTarget::Session(session.id), true).await.expect("delete session");
    assert_eq!(blocked, DeleteOutcome::RunsNotTerminal(vec![spec.run.id]), "a cascade over a queued run");
    let blocked = store.delete(DeleteTarget::Run(spec.run.id), false).await.expect("delete run");
    assert_eq!(blocked, DeleteOutcome::RunsNotTerminal(vec![spec.run.id]), "a queued run");

    let (_, lease) = store.claim_run("deletes", LONG_LEASE).await.expect("claim_run").expect("the run");
    for message in messages() {
        store.append_message(&lease, &message).await.expect("append_message");
    }
    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");
    let deleted = store.delete(DeleteTarget::Run(spec.run.id), false).await.expect("delete run");
    assert_eq!(deleted, DeleteOutcome::Deleted(Dependants::default()), "a terminal run");
    assert_eq!(store.get_run(spec.run.id).await.expect("get_run"), None, "the deleted run is gone");
    assert_eq!(
        store.list_run_events(spec.run.id, 0, 100).await.expect("list_run_events"),
        Vec::new(),
        "its events are gone"
    );
    let reused = IdempotencyRecord::new("POST /api/v1/run", key.key.clone(), "{}", Uuid::now_v7());
    let stored = store.put_idempotency_key(&reused).await.expect("put_idempotency_key");
    assert_eq!(stored.resource_id, reused.resource_id, "the run's idempotency key is gone");

    let second = run_spec(&session);
    store.insert_run(&second).await.expect("insert_run");
    drain(store).await;
    let deleted = store.delete(DeleteTarget::Task(session.task_id), true).await.expect("cascade delete task");
    assert_eq!(deleted, DeleteOutcome::Deleted(Dependants::new(vec![session.id], vec![second.run.id])), "a cascade");
    assert_eq!(store.get_session(session.id).await.expect("get_session"), None, "the session went with its task");
    assert_eq!(store.get_run(second.run.id).await.expect("get_run"), None, "the run went with its task");
    assert_eq!(store.get_task(session.task_id).await.expect("get_task"), None, "the task is gone");
    assert!(store.get_team(session.team_id).await.expect("get_team").is_some(), "the team stays");
    let deleted = store.delete(DeleteTarget::Team(session.team_id), false).await.expect("delete unused team");
    assert_eq!(deleted, DeleteOutcome::Deleted(Dependants::default()), "an unused team");
    let gone = store.delete(DeleteTarget::Team(session.team_id), false).await.expect("delete deleted team");
    assert_eq!(gone, DeleteOutcome::NotFound, "a deleted team");
}

/// Checks that retention deletes terminal runs finished before the cutoff and nothing else.
pub async fn check_retention(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let old = run_spec(&session);
    store.insert_run(&old).await.expect("insert_run");
    drain(store).await;
    let cutoff = Timestamp::now().saturating_add(Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let recent = run_spec(&session);
    store.insert_run(&recent).await.expect("insert_run");
    drain(store).await;
    let queued = run_spec(&session);
    store.insert_run(&queued).await.expect("insert_run");

    let first = store.delete_finished_runs(cutoff, 1).await.expect("delete_finished_runs with limit 1");
    assert_eq!(first.len(), 1, "delete_finished_runs deletes at most `limit` runs");
    let mut deleted = first;
    deleted.extend(store.delete_finished_runs(cutoff, usize::MAX).await.expect("delete_finished_runs"));
    assert!(deleted.contains(&old.run.id), "the run finished before the cutoff is deleted");
    assert!(!deleted.contains(&recent.run.id), "a run finished after the cutoff stays");
    assert_eq!(store.get_run(old.run.id).await.expect("get_run"), None, "the old run is gone");
    assert!(store.get_run(recent.run.id).await.expect("get_run").is_some(), "the recent run stays");
    assert!(store.get_run(queued.run.id).await.expect("get_run").is_some(), "a queued run stays");
    drain(store).await;
}

/// Checks the inputs of run time estimates: queue positions in claim order (ties on
/// `created_at` broken by id, across sessions) and the durations of a team's recently finished
/// runs, newest first, without cancelled runs.
pub async fn check_estimate_inputs(store: &dyn Storage) {
    drain(store).await;
    let (first_team, second_team) = (new_session(store).await, new_session(store).await);
    let base = Timestamp::now();
    let mut queued: Vec<RunSpec> = (0..3u64)
        .map(|index| {
            let mut spec = run_spec(&first_team);
            spec.run.created_at = base.saturating_add(Duration::from_millis(index));
            spec
        })
        .collect();
    let mut tie = run_spec(&first_team);
    tie.run.created_at = queued[2].run.created_at;
    queued.push(tie);
    let mut other = run_spec(&second_team);
    other.run.created_at = base.saturating_add(Duration::from_millis(10));
    queued.push(other);
    for spec in &queued {
        store.insert_run(spec).await.expect("insert_run");
    }

    let key = |spec: &RunSpec| (spec.run.created_at, spec.run.id);
    for spec in &queued {
        let expected = queued.iter().filter(|ahead| key(ahead) < key(spec)).count() as u64;
        let position = store.count_queued_before(spec.run.created_at, spec.run.id).await.expect("count_queued_before");
        assert_eq!(position, expected, "queue position of run {} created at {}", spec.run.id, spec.run.created_at);
    }

    // Runs finish at `started_at` plus a chosen duration, later than any other check's runs,
    // so they are the newest finished runs of the store too.
    let finish_after = |spec: RunSpec, status: RunStatus, seconds: u64| {
        let started_at = spec.run.started_at.expect("a claimed run has started_at");
        let mut outcome = stopped_outcome();
        outcome.status = status;
        outcome.finished_at = started_at.saturating_add(Duration::from_secs(seconds));
        outcome
    };
    let (spec, lease) = store.claim_run("estimates", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    assert_eq!(spec.run.id, queued[0].run.id, "the claim takes the first run of the queue");
    let position = store.count_queued_before(queued[1].run.created_at, queued[1].run.id).await.expect("count");
    assert_eq!(position, 0, "a claimed run is no longer queued ahead of others");
    store.finish_run(&lease, &finish_after(spec, RunStatus::Complete, 5)).await.expect("finish_run");

    let (spec, lease) = store.claim_run("estimates", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    store.finish_run(&lease, &finish_after(spec, RunStatus::Error, 2)).await.expect("finish_run");
    let (spec, lease) = store.claim_run("estimates", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    store.finish_run(&lease, &finish_after(spec, RunStatus::Stopped, 60)).await.expect("finish_run");
    let (_, lease) = store.claim_run("estimates", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");
    let (spec, lease) = store.claim_run("estimates", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    assert_eq!(spec.run.session_id, second_team.id, "the run of the second team is claimed last");
    store.finish_run(&lease, &finish_after(spec, RunStatus::Complete, 9)).await.expect("finish_run");

    let seconds = |durations: Vec<Duration>| durations.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
    let first = store.recent_run_durations(Some(first_team.team_id), 10).await.expect("recent_run_durations");
    assert_eq!(seconds(first), [5.0, 2.0], "complete and error runs of the team, newest first, without stopped runs");
    let limited = store.recent_run_durations(Some(first_team.team_id), 1).await.expect("recent_run_durations");
    assert_eq!(seconds(limited), [5.0], "at most `limit` durations");
    let second = store.recent_run_durations(Some(second_team.team_id), 10).await.expect("recent_run_durations");
    assert_eq!(seconds(second), [9.0], "only the runs of the team asked for");
    let all = store.recent_run_durations(None, 3).await.expect("recent_run_durations");
    assert_eq!(seconds(all), [9.0, 5.0, 2.0], "runs of every team without a team");
    let unknown = store.recent_run_durations(Some(Uuid::now_v7()), 10).await.expect("recent_run_durations");
    assert!(unknown.is_empty(), "a team without finished runs has no durations");
}

/// Checks that [`Storage::tokens_used_by`] sums prompt and completion tokens of one user's
/// runs, whatever their status, and leaves out other users' runs and runs without a result.
pub async fn check_token_usage(store: &dyn Storage) {
    drain(store).await;
    let session = new_session(store).await;
    let user = format!("budget-{}", Uuid::now_v7());
    assert_eq!(store.tokens_used_by(&user).await.expect("tokens_used_by"), 0, "a user without runs used nothing");

    let usage = |prompt_tokens, completion_tokens| TeamResult {
        usage: RequestUsage { prompt_tokens, completion_tokens },
        ..TeamResult::default()
    };
    let outcomes = [
        RunOutcome::complete(usage(100, 20)),
        RunOutcome::error(
            Some(usage(7, 3)),
            "RateLimitError: rate limit reached".to_owned(),
            ErrorDetails {
                error_type: "RateLimitError".to_owned(),
                message: "rate limit reached".to_owned(),
                status_code: Some(429),
                llm_provider: None,
                model: None,
                attempts: 1,
            },
        ),
        stopped_outcome(),
    ];
    for outcome in &outcomes {
        let mut spec = run_spec(&session);
        spec.run.created_by_user_id = Some(user.clone());
        store.insert_run(&spec).await.expect("insert_run");
        let (_, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");
        store.finish_run(&lease, outcome).await.expect("finish_run");
    }
    let mut other = run_spec(&session);
    other.run.created_by_user_id = Some(format!("{user}-other"));
    store.insert_run(&other).await.expect("insert_run");
    let (_, lease) = store.claim_run("owner-a", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    store.finish_run(&lease, &RunOutcome::complete(usage(5000, 5000))).await.expect("finish_run");
    let mut queued = run_spec(&session);
    queued.run.created_by_user_id = Some(user.clone());
    store.insert_run(&queued).await.expect("insert_run");

    assert_eq!(
        store.tokens_used_by(&user).await.expect("tokens_used_by"),
        130,
        "the complete and the failed run count, another user's run and runs without a result do not"
    );
    assert_eq!(store.tokens_used_by(&format!("{user}-other")).await.expect("tokens_used_by"), 10_000);
    drain(store).await;
}

/// Checks that a working store is ready, and that `count_runs` follows runs from `created`
/// to `active` to a terminal status.
pub async fn check_ready_and_counts(store: &dyn Storage) {
    store.ready().await.expect("a working store is ready");
    drain(store).await;
    let count = |status: RunStatus| async move { store.count_runs(status).await.expect("count_runs") };
    assert_eq!(count(RunStatus::Created).await, 0, "drain leaves no created run");
    let (active_before, stopped_before) = (count(RunStatus::Active).await, count(RunStatus::Stopped).await);

    let session = new_session(store).await;
    for _ in 0..3 {
        store.insert_run(&run_spec(&session)).await.expect("insert_run");
    }
    assert_eq!(count(RunStatus::Created).await, 3);

    let (_, lease) = store.claim_run("owner-count", LONG_LEASE).await.expect("claim_run").expect("a queued run");
    assert_eq!(count(RunStatus::Created).await, 2);
    assert_eq!(count(RunStatus::Active).await, active_before + 1);

    store.finish_run(&lease, &stopped_outcome()).await.expect("finish_run");
    assert_eq!(count(RunStatus::Active).await, active_before);
    assert_eq!(count(RunStatus::Stopped).await, stopped_before + 1);
    drain(store).await;
    assert_eq!(count(RunStatus::Created).await, 0);
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
        session_state: None,
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
