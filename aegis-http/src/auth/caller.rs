//! [`Caller`]: the user a request acts for, and the ownership rules handlers apply with it.
//!
//! A row belongs to the user in its `created_by_user_id`. An authenticated caller sees and
//! changes only its own rows. Any other row gets 404 as an unknown id does, and so do rows
//! without a user, stored before keys were configured. An anonymous caller (a server
//! without keys) can read every row.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use uuid::Uuid;

use aegis_core::{Error, FieldError, ResourceKind, Run, RunDocument, Session, Task, Team};

use crate::error::ApiError;

/// The field that names a row's owner in bodies and list filters.
const OWNER_FIELD: &str = "created_by_user_id";

/// The user a request acts for, set by the authentication middleware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No API keys are configured, so the request acts for no user and can read every row.
    Anonymous,
    /// The request presented the key at `key_index`, which acts as `user_id`.
    User {
        /// The user id the key maps to.
        user_id: Arc<str>,
        /// Position of the key in the configured list.
        key_index: usize,
    },
}

/// A row with an owner.
pub(crate) trait Owned {
    /// Returns the row's `created_by_user_id`.
    fn owner(&self) -> Option<&str>;
}

macro_rules! owned {
    ($($resource:ty),*) => {
        $(impl Owned for $resource {
            fn owner(&self) -> Option<&str> {
                self.created_by_user_id.as_deref()
            }
        })*
    };
}

owned!(Task, Team, Session, Run, RunDocument);

impl Caller {
    /// Returns the authenticated user's id.
    pub(crate) fn user_id(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::User { user_id, .. } => Some(user_id),
        }
    }

    /// Sets `created_by_user_id` of a new row to the caller's user. A body that names another
    /// user is 403, because a key may only create rows for its own user.
    pub(crate) fn stamp_creator(&self, created_by_user_id: &mut Option<String>) -> Result<(), ApiError> {
        let Some(user_id) = self.user_id() else {
            return Ok(());
        };
        if let Some(named) = created_by_user_id.as_deref()
            && named != user_id
        {
            return Err(other_user(named, "create rows for", "leave created_by_user_id out, or send your own user id"));
        }
        *created_by_user_id = Some(user_id.to_owned());
        Ok(())
    }

    /// Restricts a list filter on `created_by_user_id` to the caller's user. A filter naming
    /// another user is 403.
    pub(crate) fn restrict_filter(&self, created_by_user_id: &mut Option<String>) -> Result<(), ApiError> {
        let Some(user_id) = self.user_id() else {
            return Ok(());
        };
        if let Some(named) = created_by_user_id.as_deref()
            && named != user_id
        {
            return Err(other_user(named, "list rows of", "leave the created_by_user_id filter out"));
        }
        *created_by_user_id = Some(user_id.to_owned());
        Ok(())
    }

    /// Returns whether the caller may see `row`.
    pub(crate) fn can_see(&self, row: &impl Owned) -> bool {
        match self.user_id() {
            None => true,
            Some(user_id) => row.owner() == Some(user_id),
        }
    }

    /// Returns `row` when the caller may see it, else the 404 of an unknown `id`.
    pub(crate) fn visible<T: Owned>(&self, row: T, kind: ResourceKind, id: Uuid) -> Result<T, ApiError> {
        self.referenced(Ok(row), kind, id, "id")
    }

    /// Returns the row a request refers to in `field` (such as `task_id`), mapping both an
    /// unknown id and another user's row to a 404 on that field.
    pub(crate) fn referenced<T: Owned>(
        &self,
        read: Result<T, Error>,
        kind: ResourceKind,
        id: Uuid,
        field: &str,
    ) -> Result<T, ApiError> {
        match read {
            Ok(row) if self.can_see(&row) => Ok(row),
            Ok(_) | Err(Error::NotFound { .. }) => {
                Err(ApiError::from(Error::NotFound { kind, id, field: field.to_owned() }))
            }
            Err(error) => Err(error.into()),
        }
    }
}

fn other_user(named: &str, action: &str, fix: &str) -> ApiError {
    let message = format!("the API key may not {action} user {named:?}");
    ApiError::new(StatusCode::FORBIDDEN, format!("Forbidden field {OWNER_FIELD}: {message}"))
        .with_error(FieldError::new(OWNER_FIELD, "forbidden", message).with_fix(fix))
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    /// Reads the caller the middleware stored. A route outside the middleware has none and
    /// fails closed, so a wiring mistake never shows every user's rows.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, ApiError> {
        match parts.extensions.get::<Caller>() {
            Some(caller) => Ok(caller.clone()),
            None => {
                tracing::error!(
                    path = parts.uri.path(),
                    "a handler needs the caller but the route is not authenticated"
                );
                Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "The request failed unexpectedly; try again."))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Caller {
        Caller::User { user_id: Arc::from("alice"), key_index: 0 }
    }

    #[test]
    fn stamp_sets_own_user_and_rejects_others() {
        let mut unset = None;
        alice().stamp_creator(&mut unset).unwrap();
        assert_eq!(unset.as_deref(), Some("alice"));

        let mut own = Some("alice".to_owned());
        alice().stamp_creator(&mut own).unwrap();
        assert_eq!(own.as_deref(), Some("alice"));

        let error = alice().stamp_creator(&mut Some("bob".to_owned())).unwrap_err();
        assert_eq!(error.status(), StatusCode::FORBIDDEN);

        let mut anonymous = Some("bob".to_owned());
        Caller::Anonymous.stamp_creator(&mut anonymous).unwrap();
        assert_eq!(anonymous.as_deref(), Some("bob"), "without keys the body is taken as given");
    }

    #[tokio::test]
    async fn missing_caller_fails_closed() {
        let request = axum::http::Request::builder().uri("/task").body(()).unwrap();
        let (mut parts, ()) = request.into_parts();
        let error = Caller::from_request_parts(&mut parts, &()).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);

        parts.extensions.insert(alice());
        assert_eq!(Caller::from_request_parts(&mut parts, &()).await.unwrap(), alice());
    }

    #[test]
    fn referenced_hides_other_users_rows() {
        let id = Uuid::now_v7();
        let now = aegis_core::Timestamp::now();
        let task = Task {
            id,
            name: "marking".to_owned(),
            description: None,
            version: None,
            created_by_user_id: Some("bob".to_owned()),
            archived: false,
            created_at: now,
            updated_at: now,
        };
        let error = alice().referenced(Ok(task.clone()), ResourceKind::Task, id, "task_id").unwrap_err();
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
        assert!(Caller::Anonymous.can_see(&task));
        assert!(Caller::User { user_id: Arc::from("bob"), key_index: 1 }.can_see(&task));
    }
}
