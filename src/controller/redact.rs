//! Keeps row data out of what the controller publishes.
//!
//! Anyone who may read a `MoveTablesWorkflow` or its Events is not necessarily allowed to read the
//! moved tables. Copy bookmarks hold the last primary key copied (an email, a customer id), and
//! MySQL errors relayed by VReplication quote the values of the failing row ("Duplicate entry
//! 'alice@example.com' for key ...") and the statement that failed. By default the status and
//! the Events carry progress without those values: bookmarks keep the table but not the key,
//! single-quoted literals become `'…'`, and a statement after `query:` is cut. The operator's
//! `--publish-row-data` flag turns this off for installs where resource readers may see the data.

use crate::api::MoveTablesWorkflowStatus;

/// What replaces a redacted literal's content.
const REDACTED: &str = "…";

/// `text` without row data: single-quoted literals keep their quotes but not their content, and
/// whatever follows `query:` (the failing statement, with its values) is replaced.
pub fn row_data(text: &str) -> String {
    let (head, cut) = match find_ascii_case_insensitive(text, "query:") {
        Some(at) => (&text[..at + "query:".len()], true),
        None => (text, false),
    };
    let mut out = String::with_capacity(head.len());
    let mut chars = head.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '\'' {
            continue;
        }
        // Inside a literal: skip to the closing quote (`\'` and `''` are escapes).
        let mut content = false;
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                    content = true;
                }
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    content = true;
                }
                '\'' => {
                    closed = true;
                    break;
                }
                _ => content = true,
            }
        }
        if content {
            out.push_str(REDACTED);
        }
        if closed {
            out.push('\'');
        }
    }
    if cut {
        out.push_str(" <statement not shown>");
    }
    out
}

/// Removes row data from a workflow status: bookmark keys, and literals in stream messages and
/// in every message that may quote one (conditions, blockers, the last heal, the last error).
pub fn status(status: &mut MoveTablesWorkflowStatus) {
    for stream in &mut status.streams {
        for bookmark in &mut stream.bookmarks {
            bookmark.last_pk = None;
        }
        if let Some(message) = &mut stream.message {
            *message = row_data(message);
        }
    }
    for condition in &mut status.conditions {
        condition.message = row_data(&condition.message);
    }
    for blocker in &mut status.blockers {
        blocker.message = row_data(&blocker.message);
    }
    if let Some(heal) = &mut status.last_heal {
        heal.message = row_data(&heal.message);
    }
    if let Some(retry) = &mut status.retry {
        retry.last_error = row_data(&retry.last_error);
    }
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_errors_keep_their_shape_without_values() {
        assert_eq!(
            row_data(
                "Duplicate entry 'alice@example.com' for key 'customer.email' (errno 1062) \
                 (sqlstate 23000) during query: insert into customer(id, email) values (5, \
                 'alice@example.com')"
            ),
            "Duplicate entry '…' for key '…' (errno 1062) (sqlstate 23000) during query: \
             <statement not shown>"
        );
        assert_eq!(
            row_data("Incorrect integer value: 'x''y\\'z' for column 'id' at row 1"),
            "Incorrect integer value: '…' for column '…' at row 1"
        );
    }

    #[test]
    fn text_without_literals_is_unchanged() {
        for text in [
            "FROZEN",
            "Stopped at position MySQL56/3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
            "stream 1 on shard -80: vttablet: rpc error: code = Unavailable",
            "empty '' stays",
            "",
        ] {
            assert_eq!(row_data(text), text);
        }
    }

    #[test]
    fn an_unterminated_literal_is_redacted_to_the_end() {
        assert_eq!(row_data("value 'secret and more"), "value '…");
        assert_eq!(row_data("multibyte 'é€' ok"), "multibyte '…' ok");
    }

    #[test]
    fn status_loses_keys_but_keeps_progress() {
        let mut s: MoveTablesWorkflowStatus = serde_json::from_value(serde_json::json!({
            "streams": [{
                "direction": "Forward", "keyspace": "customer", "shard": "0", "id": 1,
                "state": "Copying", "rowsCopied": 42, "copyCycles": 3,
                "message": "Duplicate entry 'bob' for key 'PRIMARY'",
                "bookmarks": [{"table": "customer", "lastPk": "fields:{name:\"id\"} rows:{values:\"17\"}"}],
            }],
            "blockers": [{"reason": "StreamError", "message": "stream 1: Duplicate entry 'bob'"}],
        }))
        .expect("a status");
        status(&mut s);
        let stream = &s.streams[0];
        assert_eq!(stream.rows_copied, 42);
        assert_eq!(stream.copy_cycles, 3);
        assert_eq!(stream.bookmarks[0].table, "customer");
        assert_eq!(stream.bookmarks[0].last_pk, None);
        assert_eq!(
            stream.message.as_deref(),
            Some("Duplicate entry '…' for key '…'")
        );
        assert_eq!(s.blockers[0].message, "stream 1: Duplicate entry '…'");
    }
}
