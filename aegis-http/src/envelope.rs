//! The success envelope: `{"message", "meta", "data"}`, as the tutorial's responses show.

use axum::Json;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
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
        let meta = page_meta(&page);
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

/// `meta` of a list: `next_cursor` (`null` on the last page) and `has_more`.
fn page_meta<U>(page: &Page<U>) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert(
        "next_cursor".to_owned(),
        page.next_cursor.as_ref().map(|cursor| Value::String(cursor.encode())).unwrap_or(Value::Null),
    );
    meta.insert("has_more".to_owned(), Value::Bool(page.next_cursor.is_some()));
    meta
}

/// A successful read whose data is JSON text encoded before, such as a finished run's stored
/// document. The text goes into the body as it is: decoding it only to encode it again cost
/// more than the rest of the request.
#[derive(Debug)]
pub(crate) struct RawEnvelope {
    meta: Map<String, Value>,
    data: RawData,
}

#[derive(Debug)]
enum RawData {
    One(String),
    Many(Vec<String>),
}

impl RawEnvelope {
    /// Builds a 200 response to a read of one resource, as [`Envelope::got`].
    pub(crate) fn got(json: String) -> RawEnvelope {
        RawEnvelope { meta: Map::new(), data: RawData::One(json) }
    }

    /// Builds a 200 response to a list, as [`Envelope::page`].
    pub(crate) fn page<U>(page: Page<U>, convert: impl FnMut(U) -> String) -> RawEnvelope {
        let meta = page_meta(&page);
        RawEnvelope { meta, data: RawData::Many(page.items.into_iter().map(convert).collect()) }
    }

    /// Writes `{"message", "meta", "data"}` with the data's text as it is.
    fn write(&self) -> Result<Vec<u8>, serde_json::Error> {
        let data_len = match &self.data {
            RawData::One(json) => json.len(),
            RawData::Many(items) => items.iter().map(|json| json.len() + 1).sum::<usize>() + 2,
        };
        let mut body = Vec::with_capacity(data_len + 256);
        body.extend_from_slice(b"{\"message\":");
        serde_json::to_writer(&mut body, DATA_GOT)?;
        body.extend_from_slice(b",\"meta\":");
        serde_json::to_writer(&mut body, &self.meta)?;
        body.extend_from_slice(b",\"data\":");
        match &self.data {
            RawData::One(json) => body.extend_from_slice(json.as_bytes()),
            RawData::Many(items) => {
                body.push(b'[');
                for (index, json) in items.iter().enumerate() {
                    if index > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(json.as_bytes());
                }
                body.push(b']');
            }
        }
        body.push(b'}');
        Ok(body)
    }
}

impl IntoResponse for RawEnvelope {
    fn into_response(self) -> Response {
        match self.write() {
            Ok(body) => ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
            // Only `meta` is encoded here, and a map of strings always encodes.
            Err(error) => {
                tracing::error!(%error, "encoding a response envelope failed");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
