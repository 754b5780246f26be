//! Tests of `lib`.

use super::*;

fn at(ms: u64, ok: bool) -> Attempt {
    Attempt {
        start: Duration::from_millis(ms),
        end: Duration::from_millis(ms + 5),
        ok,
    }
}

#[test]
fn gaps_run_from_the_first_failure_to_the_next_success() {
    let found = gaps(vec![
        at(0, true),
        at(10, false),
        at(20, false),
        at(30, true),
        at(40, false),
    ]);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].length(), Duration::from_millis(20));
    assert_eq!(found[0].failures, 2);
    assert_eq!(found[1].failures, 1, "a trailing failure is a gap too");
}
