//! The success envelope: `{"message", "meta", "data"}`, as the tutorial's responses show.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use aegis_core::storage::Page;

/// The message of every successful read.
pub(crate) const DATA_GOT: &str = "Data got correctly";

/// A successful response.
#[derive(Debug)]
pub(crate) struct Envelope<T> {
    status: StatusCode,
    message: &'static str,
    meta: Map<String, Value>,
    data: T,
}

impl<T: Serialize> Envelope<T> {
    /// A 200 response to a read.
    pub(crate) fn got(data: T) -> Envelope<T> {
        Envelope { status: StatusCode::OK, message: DATA_GOT, meta: Map::new(), data }
    }

    /// A 200 response to an action or a computation, with a message such as `Run cancelled.`.
    pub(crate) fn ok(message: &'static str, data: T) -> Envelope<T> {
        Envelope { status: StatusCode::OK, message, meta: Map::new(), data }
    }

    /// A 200 response to a list: the page's rows as `data`, and `meta.next_cursor` (`null`
    /// on the last page) and `meta.has_more`.
    pub(crate) fn page<U>(page: Page<U>, convert: impl FnMut(U) -> T) -> Envelope<Vec<T>> {
        let mut meta = Map::new();
        meta.insert(
            "next_cursor".to_owned(),
            page.next_cursor.map(|cursor| Value::String(cursor.encode())).unwrap_or(Value::Null),
        );
        meta.insert("has_more".to_owned(), Value::Bool(page.next_cursor.is_some()));
        let data = page.items.into_iter().map(convert).collect();
        Envelope { status: StatusCode::OK, message: DATA_GOT, meta, data }
    }

    /// A 201 response to a create, with a message such as `Run created.`.
    pub(crate) fn created(message: &'static str, data: T) -> Envelope<T> {
        Envelope { status: StatusCode::CREATED, message, meta: Map::new(), data }
    }
}

#[derive(Serialize)]
struct Body<'a, T> {
    message: &'a str,
    meta: &'a Map<String, Value>,
    data: &'a T,
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        let body = Body { message: self.message, meta: &self.meta, data: &self.data };
        (self.status, Json(body)).into_response()
    }
}
