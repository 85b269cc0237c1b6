//! The query of a list route: its page (`limit`, `order`, `cursor`) and its filters; also
//! `cascade` of a DELETE and `wait` of `GET /run/{id}`.
//!
//! Every list route reads the same page parameters, so a client pages tasks, teams,
//! sessions, runs and a run's messages alike. Values are parsed one by one into the names the
//! API documents, so a bad value gets a 422 naming the parameter and the fix. Parameters a
//! route does not know are ignored, like unknown fields in bodies.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use uuid::Uuid;

use aegis_core::storage::{ListFilter, Listing, PageRequest, RunFilter};
use aegis_core::{Error, FieldError, RunStatus, Timestamp};

use crate::error::ApiError;
use crate::extract::parse_uuid;

/// The raw query parameters of a list route.
#[derive(Debug, Default)]
pub(crate) struct ListQuery(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<ListQuery, ApiError> {
        let Query(params) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri).map_err(|rejection| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("The query string is invalid: {}", rejection.body_text()))
        })?;
        Ok(ListQuery(params))
    }
}

impl ListQuery {
    /// Returns the page of `list` the query requests.
    pub(crate) fn page(&self, list: Listing) -> Result<PageRequest, ApiError> {
        let get = |name: &str| self.0.get(name).map(String::as_str);
        PageRequest::from_query(list, get("limit"), get("order"), get("cursor"))
            .map_err(|problems| Error::Invalid(problems).into())
    }

    /// Returns the filter of `GET /task` and `GET /team`, paging `list`.
    pub(crate) fn list_filter(&self, list: Listing) -> Result<ListFilter, ApiError> {
        let mut filter = ListFilter::default();
        filter.page = self.page(list)?;
        filter.archived = self.archived()?;
        filter.created_by_user_id = self.text("created_by_user_id");
        Ok(filter)
    }

    /// Returns the filter of `GET /session`: [`ListQuery::list_filter`] plus `task_id` and
    /// `team_id`.
    pub(crate) fn session_filter(&self) -> Result<ListFilter, ApiError> {
        let mut filter = self.list_filter(Listing::Sessions)?;
        filter.task_id = self.uuid("task_id")?;
        filter.team_id = self.uuid("team_id")?;
        Ok(filter)
    }

    /// Returns the filter of `GET /run`.
    pub(crate) fn run_filter(&self) -> Result<RunFilter, ApiError> {
        let mut filter = RunFilter::default();
        filter.page = self.page(Listing::Runs)?;
        filter.session_id = self.uuid("session_id")?;
        filter.task_id = self.uuid("task_id")?;
        filter.status = self.status()?;
        filter.created_by_user_id = self.text("created_by_user_id");
        filter.archived = self.archived()?;
        filter.created_after = self.timestamp("created_after")?;
        filter.created_before = self.timestamp("created_before")?;
        Ok(filter)
    }

    /// Reads `cascade` of a DELETE: `true` deletes the dependants too, `false` (the default)
    /// rejects a delete that has dependants.
    pub(crate) fn cascade(&self) -> Result<bool, ApiError> {
        match self.0.get("cascade").map(String::as_str) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::invalid(
                "cascade",
                "invalid_value",
                format!("'{other}' is not true or false"),
                Some("use cascade=true to delete the dependants too, or leave it out"),
            )),
        }
    }

    /// Returns the raw value of a parameter that is not a list's, such as `wait`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn uuid(&self, name: &str) -> Result<Option<Uuid>, ApiError> {
        self.0.get(name).map(|raw| parse_uuid(name, raw)).transpose()
    }

    /// Reads `archived`: `false` (the default) hides archived rows, `true` lists only them,
    /// `any` lists both.
    fn archived(&self) -> Result<Option<bool>, ApiError> {
        match self.0.get("archived").map(String::as_str) {
            None | Some("false") => Ok(Some(false)),
            Some("true") => Ok(Some(true)),
            Some("any") => Ok(None),
            Some(other) => Err(ApiError::invalid(
                "archived",
                "invalid_value",
                format!("'{other}' is not one of false, true, any"),
                Some(
                    "use archived=true for archived rows only, archived=any for all rows, or leave it out to hide archived rows",
                ),
            )),
        }
    }

    fn status(&self) -> Result<Option<RunStatus>, ApiError> {
        let Some(raw) = self.0.get("status") else {
            return Ok(None);
        };
        if !RunStatus::known_values().contains(&raw.as_str()) {
            let problem = FieldError::new("status", "invalid_value", format!("unknown run status '{raw}'"))
                .with_fix(format!("use one of: {}", RunStatus::known_values().join(", ")));
            return Err(Error::Invalid(vec![problem]).into());
        }
        let status = serde_json::from_value(serde_json::Value::String(raw.clone())).unwrap_or(RunStatus::Created);
        Ok(Some(status))
    }

    fn timestamp(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        let Some(raw) = self.0.get(name) else {
            return Ok(None);
        };
        match Timestamp::parse(raw) {
            Ok(timestamp) => Ok(Some(timestamp)),
            Err(_) => Err(ApiError::invalid(
                name,
                "invalid_value",
                format!("'{raw}' is not an RFC 3339 timestamp"),
                Some("give a time such as 2025-03-24T05:56:31Z (URL-encode a + offset as %2B)"),
            )),
        }
    }
}
