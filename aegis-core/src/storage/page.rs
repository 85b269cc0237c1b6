//! Keyset pagination: [`PageRequest`] in, [`Page`] out, [`Cursor`] between requests.
//!
//! Lists are ordered by `(created_at, id)`, newest first unless [`SortOrder::Asc`] is asked
//! for. A page ends at a key, and the next page starts strictly after that key, so a store
//! answers it with one range condition on an index over `(created_at, id)`. Unlike an offset,
//! a key does not move when rows are inserted, so a client walking the pages while others
//! insert sees no row twice and misses none of the rows that existed when it started. The id
//! breaks ties between rows created in the same microsecond.
//!
//! A [`Cursor`] is the key of the last row of a page plus the order the page was listed in and
//! the [`Listing`] it came from, encoded as an opaque URL-safe string (lowercase hex of a
//! versioned text). It carries the order because a key means nothing in the other order: a
//! request whose `order` differs from its cursor's is rejected, not silently restarted. It
//! carries the listing because a task's key given to the run list would return a page of
//! runs that starts at an arbitrary point, which looks right and is not.
//!
//! NOTE: a row becomes visible when its insert commits, but it sorts by the `created_at` its
//! writer set before. A row committed after a later-stamped row may therefore land behind a
//! cursor that has already passed it (only possible in ascending order, and only for rows
//! inserted while the walk is under way).

use std::fmt;

use uuid::Uuid;

use crate::error::FieldError;
use crate::timestamp::Timestamp;

/// The page size when a request does not give one.
pub const DEFAULT_LIMIT: usize = 20;

/// The largest page size a request may ask for.
pub const MAX_LIMIT: usize = 100;

/// The direction of a listing over `(created_at, id)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SortOrder {
    /// Newest first: descending `(created_at, id)`.
    #[default]
    Desc,
    /// Oldest first: ascending `(created_at, id)`.
    Asc,
}

impl SortOrder {
    /// Parses the `order` query value: `asc` or `desc`.
    pub fn parse(text: &str) -> Result<SortOrder, FieldError> {
        match text {
            "desc" => Ok(SortOrder::Desc),
            "asc" => Ok(SortOrder::Asc),
            other => Err(FieldError::new("order", "invalid_value", format!("unknown order '{other}'"))
                .with_fix("use order=desc (newest first, the default) or order=asc (oldest first)")),
        }
    }

    /// Returns the query value of the order.
    pub fn as_str(self) -> &'static str {
        match self {
            SortOrder::Desc => "desc",
            SortOrder::Asc => "asc",
        }
    }
}

/// The list a cursor was issued for, so a cursor from one list is refused by another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Listing {
    /// `GET /task`.
    Tasks,
    /// `GET /team`.
    Teams,
    /// `GET /session`.
    Sessions,
    /// `GET /run`.
    Runs,
    /// `GET /run/{id}/messages`.
    RunMessages,
}

impl Listing {
    const ALL: [Listing; 5] = [Listing::Tasks, Listing::Teams, Listing::Sessions, Listing::Runs, Listing::RunMessages];

    /// Returns the tag of the listing inside an encoded cursor.
    fn tag(self) -> &'static str {
        match self {
            Listing::Tasks => "task",
            Listing::Teams => "team",
            Listing::Sessions => "session",
            Listing::Runs => "run",
            Listing::RunMessages => "message",
        }
    }

    /// Returns how the listing is named in an error message.
    fn describe(self) -> &'static str {
        match self {
            Listing::Tasks => "the task list",
            Listing::Teams => "the team list",
            Listing::Sessions => "the session list",
            Listing::Runs => "the run list",
            Listing::RunMessages => "a run's message list",
        }
    }

    fn from_tag(tag: &str) -> Option<Listing> {
        Listing::ALL.into_iter().find(|listing| listing.tag() == tag)
    }
}

/// The position of a row in a listing: its creation time, then its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Keyset {
    /// The row's `created_at`.
    pub created_at: Timestamp,
    /// The row's id, which orders rows with equal `created_at`.
    pub id: Uuid,
}

impl Keyset {
    /// Creates the key of a row.
    pub fn new(created_at: Timestamp, id: Uuid) -> Keyset {
        Keyset { created_at, id }
    }
}

/// The start of a page: a row key for stored resources, or a position for a run's messages,
/// which have no creation-ordered unique id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CursorKey {
    /// After this row key.
    Keyset(Keyset),
    /// After this 1-based position in a sequence.
    Position(u64),
}

/// A pointer to the end of a page, handed to clients as an opaque string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The list the page belongs to. It is `None` when the request named no list (a store
    /// listing on its own) or when the cursor predates list tags.
    pub list: Option<Listing>,
    /// The order the page was listed in.
    pub order: SortOrder,
    /// The last row of the page.
    pub key: CursorKey,
}

/// The version tag of the cursor text without a list, so a later format can still read
/// old cursors.
const CURSOR_VERSION: &str = "c1";

/// The version tag of the cursor text that names its list after the tag.
const CURSOR_VERSION_LISTED: &str = "c2";

impl Cursor {
    /// Encodes the cursor as lowercase hex, which is URL-safe and needs no escaping.
    pub fn encode(&self) -> String {
        let key = match self.key {
            CursorKey::Keyset(key) => format!("k.{}.{}", key.created_at.unix_micros(), key.id.simple()),
            CursorKey::Position(position) => format!("p.{position}"),
        };
        let text = match self.list {
            Some(list) => format!("{CURSOR_VERSION_LISTED}.{}.{}.{key}", list.tag(), self.order.as_str()),
            None => format!("{CURSOR_VERSION}.{}.{key}", self.order.as_str()),
        };
        text.bytes().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Decodes a cursor that [`Cursor::encode`] produced.
    pub fn decode(encoded: &str) -> Result<Cursor, FieldError> {
        let invalid = || {
            FieldError::new("cursor", "invalid_value", "the cursor is not one this server issued").with_fix(
                "pass meta.next_cursor of the previous page unchanged, or leave cursor out for the first page",
            )
        };

        let text = decode_hex(encoded).ok_or_else(invalid)?;
        let mut parts: Vec<&str> = text.split('.').collect();
        let list = match parts.as_slice() {
            [CURSOR_VERSION_LISTED, tag, ..] => {
                let list = Listing::from_tag(tag).ok_or_else(invalid)?;
                // The rest reads like the unlisted format once the list tag is taken out.
                parts.remove(1);
                parts[0] = CURSOR_VERSION;
                Some(list)
            }
            _ => None,
        };
        let (order, key) = match parts.as_slice() {
            [CURSOR_VERSION, order, "k", micros, id] => {
                let created_at = micros.parse().ok().and_then(Timestamp::from_unix_micros).ok_or_else(invalid)?;
                let id = Uuid::try_parse(id).map_err(|_| invalid())?;
                (*order, CursorKey::Keyset(Keyset::new(created_at, id)))
            }
            [CURSOR_VERSION, order, "p", position] => {
                (*order, CursorKey::Position(position.parse().map_err(|_| invalid())?))
            }
            _ => return Err(invalid()),
        };
        let order = SortOrder::parse(order).map_err(|_| invalid())?;
        Ok(Cursor { list, order, key })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

fn decode_hex(encoded: &str) -> Option<String> {
    if !encoded.len().is_multiple_of(2) || encoded.len() > 512 {
        return None;
    }
    let bytes = (0..encoded.len())
        .step_by(2)
        .map(|start| encoded.get(start..start + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Which page of a listing to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageRequest {
    /// The most rows to return, from 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// The order of the listing.
    pub order: SortOrder,
    /// Return only rows strictly after this key in `order`; `None` for the first page.
    pub after: Option<CursorKey>,
    /// The list being paged, written into the next page's cursor; `None` when unnamed.
    pub list: Option<Listing>,
}

impl Default for PageRequest {
    fn default() -> PageRequest {
        PageRequest { limit: DEFAULT_LIMIT, order: SortOrder::Desc, after: None, list: None }
    }
}

impl PageRequest {
    /// Creates the request for the first page of `limit` rows in `order`.
    pub fn first(limit: usize, order: SortOrder) -> PageRequest {
        PageRequest { limit, order, after: None, list: None }
    }

    /// Creates the request for the page after `cursor`.
    pub fn after(limit: usize, cursor: Cursor) -> PageRequest {
        PageRequest { limit, order: cursor.order, after: Some(cursor.key), list: cursor.list }
    }

    /// Names the list being paged, so the next page's cursor is refused by other lists.
    pub fn in_list(mut self, list: Listing) -> PageRequest {
        self.list = Some(list);
        self
    }

    /// Builds a request for `list` from the query values `limit`, `order` and `cursor`, each
    /// optional.
    ///
    /// Rejects a limit outside 1 to [`MAX_LIMIT`], an unknown order, a cursor this server did
    /// not issue, a cursor of another list, and an `order` that differs from the cursor's.
    pub fn from_query(
        list: Listing,
        limit: Option<&str>,
        order: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<PageRequest, Vec<FieldError>> {
        let mut problems = Vec::new();

        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                _ => {
                    problems.push(
                        FieldError::new(
                            "limit",
                            "invalid_value",
                            format!("limit must be a whole number from 1 to {MAX_LIMIT}, got '{text}'"),
                        )
                        .with_fix(format!("ask for at most {MAX_LIMIT} rows and follow meta.next_cursor for more")),
                    );
                    DEFAULT_LIMIT
                }
            },
        };
        let order = match order.map(SortOrder::parse).transpose() {
            Ok(order) => order,
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        let cursor = match cursor.filter(|text| !text.is_empty()).map(Cursor::decode).transpose() {
            Ok(cursor) => cursor,
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        if let Some(other) = cursor.and_then(|cursor| cursor.list).filter(|other| *other != list) {
            problems.push(
                FieldError::new(
                    "cursor",
                    "cursor_mismatch",
                    format!("the cursor belongs to {}, not {}", other.describe(), list.describe()),
                )
                .with_fix(CURSOR_FIX),
            );
        }
        if let (Some(cursor), Some(order)) = (cursor, order)
            && cursor.order != order
        {
            problems.push(
                FieldError::new(
                    "order",
                    "cursor_mismatch",
                    format!(
                        "the cursor was issued for order={}, but the request asks for order={}",
                        cursor.order.as_str(),
                        order.as_str()
                    ),
                )
                .with_fix(
                    "keep the order of the first page while following its cursors, or start again without a cursor",
                ),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        let request = match cursor {
            Some(cursor) => PageRequest::after(limit, cursor),
            None => PageRequest::first(limit, order.unwrap_or_default()),
        };
        Ok(request.in_list(list))
    }

    /// Returns the row key the page starts after. A position cursor given to a keyset listing
    /// is invalid.
    pub fn after_keyset(&self) -> Result<Option<Keyset>, FieldError> {
        match self.after {
            None => Ok(None),
            Some(CursorKey::Keyset(key)) => Ok(Some(key)),
            Some(CursorKey::Position(_)) => Err(wrong_list()),
        }
    }

    /// Returns the position the page starts after, 0 for the first page. A keyset cursor
    /// given to a positional listing is invalid.
    pub fn after_position(&self) -> Result<u64, FieldError> {
        match self.after {
            None => Ok(0),
            Some(CursorKey::Position(position)) => Ok(position),
            Some(CursorKey::Keyset(_)) => Err(wrong_list()),
        }
    }

    /// Returns whether a row at `key` comes after the cursor in this request's order, so
    /// belongs on the page. Stores that sort in memory use it; SQL stores express the same
    /// condition as `(created_at, id) < (?, ?)` or `>`.
    pub fn admits(&self, key: &Keyset) -> bool {
        match (self.after, self.order) {
            (Some(CursorKey::Keyset(after)), SortOrder::Desc) => *key < after,
            (Some(CursorKey::Keyset(after)), SortOrder::Asc) => *key > after,
            _ => true,
        }
    }

    /// Sorts `rows` by key in this request's order, keeps those after the cursor and cuts
    /// the page. For stores that hold rows in memory.
    pub fn paginate<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> Keyset) -> Page<T> {
        rows.retain(|row| self.admits(&key(row)));
        rows.sort_by_key(|row| key(row));
        if self.order == SortOrder::Desc {
            rows.reverse();
        }
        rows.truncate(self.limit.saturating_add(1));
        Page::from_rows(rows, self, key)
    }
}

/// The fix for a cursor of another list.
const CURSOR_FIX: &str = "use the meta.next_cursor of this list, or drop cursor to start from the first page";

fn wrong_list() -> FieldError {
    FieldError::new("cursor", "cursor_mismatch", "the cursor belongs to a different list").with_fix(CURSOR_FIX)
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The rows, in the request's order.
    pub items: Vec<T>,
    /// Where the next page starts, `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Cuts a page from `rows`: up to `limit + 1` rows already filtered and ordered as the
    /// request asks. The extra row only shows that another page exists.
    pub fn from_rows(mut rows: Vec<T>, request: &PageRequest, key: impl Fn(&T) -> Keyset) -> Page<T> {
        let has_more = rows.len() > request.limit;
        rows.truncate(request.limit);
        let next_cursor = match (has_more, rows.last()) {
            (true, Some(last)) => {
                Some(Cursor { list: request.list, order: request.order, key: CursorKey::Keyset(key(last)) })
            }
            _ => None,
        };
        Page { items: rows, next_cursor }
    }

    /// Creates a page from its parts.
    pub fn new(items: Vec<T>, next_cursor: Option<Cursor>) -> Page<T> {
        Page { items, next_cursor }
    }

    /// Returns whether another page follows.
    pub fn has_more(&self) -> bool {
        self.next_cursor.is_some()
    }

    /// Converts the rows, keeping the cursor.
    pub fn map<U>(self, convert: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(convert).collect(), next_cursor: self.next_cursor }
    }
}

/// Pages a sequence by position (1-based), for a run's messages: `request.after` is the
/// position of the last item of the previous page.
pub fn paginate_positions<T>(items: Vec<T>, request: &PageRequest) -> Result<Page<T>, FieldError> {
    let after = request.after_position()?;

    let mut numbered: Vec<(u64, T)> = (1..).zip(items).collect();
    if request.order == SortOrder::Desc {
        numbered.reverse();
    }
    numbered.retain(|(position, _)| match (request.after, request.order) {
        (None, _) => true,
        (_, SortOrder::Desc) => *position < after,
        (_, SortOrder::Asc) => *position > after,
    });
    let has_more = numbered.len() > request.limit;
    numbered.truncate(request.limit);

    let next_cursor = match (has_more, numbered.last()) {
        (true, Some((position, _))) => {
            Some(Cursor { list: request.list, order: request.order, key: CursorKey::Position(*position) })
        }
        _ => None,
    };
    Ok(Page { items: numbered.into_iter().map(|(_, item)| item).collect(), next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(micros: i64) -> Keyset {
        Keyset::new(Timestamp::from_unix_micros(micros).unwrap(), Uuid::now_v7())
    }

    #[test]
    fn cursor_round_trips() {
        for cursor in [
            Cursor { list: None, order: SortOrder::Desc, key: CursorKey::Keyset(key(1_700_000_000_000_000)) },
            Cursor { list: Some(Listing::Runs), order: SortOrder::Asc, key: CursorKey::Keyset(key(0)) },
            Cursor { list: None, order: SortOrder::Asc, key: CursorKey::Position(7) },
            Cursor { list: Some(Listing::RunMessages), order: SortOrder::Desc, key: CursorKey::Position(7) },
        ] {
            let encoded = cursor.encode();
            assert!(encoded.bytes().all(|byte| byte.is_ascii_hexdigit()), "{encoded} is URL-safe");
            assert_eq!(Cursor::decode(&encoded).unwrap(), cursor);
        }
    }

    #[test]
    fn cursor_rejects_foreign_text() {
        for text in ["", "zz", "abc", "6331", "not a cursor", &"61".repeat(300)] {
            assert_eq!(Cursor::decode(text).unwrap_err().field, "cursor", "{text}");
        }
    }

    #[test]
    fn query_defaults_and_limits() {
        assert_eq!(
            PageRequest::from_query(Listing::Tasks, None, None, None).unwrap(),
            PageRequest::default().in_list(Listing::Tasks)
        );
        assert_eq!(
            PageRequest::from_query(Listing::Tasks, Some("100"), Some("asc"), None).unwrap(),
            PageRequest::first(100, SortOrder::Asc).in_list(Listing::Tasks)
        );
        for limit in ["0", "101", "-1", "ten", ""] {
            let problems = PageRequest::from_query(Listing::Tasks, Some(limit), None, None).unwrap_err();
            assert_eq!(problems[0].field, "limit", "limit={limit}");
        }
        assert_eq!(PageRequest::from_query(Listing::Tasks, None, Some("up"), None).unwrap_err()[0].field, "order");
    }

    #[test]
    fn query_rejects_order_mismatch() {
        let cursor = Cursor { list: None, order: SortOrder::Desc, key: CursorKey::Keyset(key(5)) }.encode();
        let problems = PageRequest::from_query(Listing::Tasks, None, Some("asc"), Some(&cursor)).unwrap_err();
        assert_eq!(problems[0].code, "cursor_mismatch");
        let request = PageRequest::from_query(Listing::Tasks, None, None, Some(&cursor)).unwrap();
        assert_eq!(request.order, SortOrder::Desc, "the cursor's order applies");
    }

    #[test]
    fn query_rejects_cursor_of_another_list() {
        let tasks = PageRequest::first(1, SortOrder::Asc).in_list(Listing::Tasks);
        let page = tasks.paginate(vec![key(1), key(2)], |row| *row);
        let cursor = page.next_cursor.unwrap();
        assert_eq!(cursor.list, Some(Listing::Tasks), "the cursor names its list");
        let encoded = cursor.encode();
        assert!(encoded.bytes().all(|byte| byte.is_ascii_hexdigit()), "{encoded} is URL-safe");

        assert!(PageRequest::from_query(Listing::Tasks, None, None, Some(&encoded)).is_ok());
        for other in [Listing::Teams, Listing::Sessions, Listing::Runs, Listing::RunMessages] {
            let problems = PageRequest::from_query(other, None, None, Some(&encoded)).unwrap_err();
            assert_eq!(problems[0].field, "cursor", "{other:?}");
            assert_eq!(problems[0].code, "cursor_mismatch", "{other:?}");
            assert!(problems[0].message.contains("task list"), "{}", problems[0].message);
            assert!(problems[0].fix.as_deref().is_some_and(|fix| fix.contains("drop cursor")), "{other:?}");
        }

        // A cursor issued before cursors named their list still works on any list.
        let old = Cursor { list: None, order: SortOrder::Asc, key: CursorKey::Keyset(key(1)) }.encode();
        assert!(PageRequest::from_query(Listing::Runs, None, None, Some(&old)).is_ok());
    }

    #[test]
    fn paginate_walks_without_overlap() {
        let rows: Vec<Keyset> = (0..7).map(|micros| key(micros / 2)).collect();
        for order in [SortOrder::Desc, SortOrder::Asc] {
            let mut request = PageRequest::first(3, order);
            let mut seen = Vec::new();
            loop {
                let page = request.paginate(rows.clone(), |row| *row);
                seen.extend(page.items.iter().copied());
                let Some(cursor) = page.next_cursor else { break };
                request = PageRequest::after(3, cursor);
            }
            let mut expected = rows.clone();
            expected.sort();
            if order == SortOrder::Desc {
                expected.reverse();
            }
            assert_eq!(seen, expected, "{order:?}");
        }
    }

    #[test]
    fn positions_walk_both_orders() {
        let items: Vec<u32> = (1..=5).collect();
        let first = paginate_positions(items.clone(), &PageRequest::first(2, SortOrder::Desc)).unwrap();
        assert_eq!(first.items, vec![5, 4]);
        let second = paginate_positions(items.clone(), &PageRequest::after(2, first.next_cursor.unwrap())).unwrap();
        assert_eq!(second.items, vec![3, 2]);
        let asc = paginate_positions(items, &PageRequest::first(5, SortOrder::Asc)).unwrap();
        assert_eq!(asc.items, vec![1, 2, 3, 4, 5]);
        assert!(!asc.has_more());
    }
}
