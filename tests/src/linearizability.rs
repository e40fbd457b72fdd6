//! A linearizability checker for per-key registers (Wing & Gong's search with the memoization
//! of Lowe and Porcupine), for histories recorded from real clients against real gateways.
//!
//! A history is a list of operations, each with the time it was invoked, the time it
//! completed (`None` if the client never learned the outcome: an error or a timeout, so the
//! operation may have taken effect at any moment after its invocation, or never), and what it
//! did or saw. Writes carry unique values, so a read names the write it observed.
//! [`check`] says whether some order of the operations, consistent with real time (an
//! operation that completed before another was invoked comes first), explains every read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// What one operation on a register did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Stored this value (`None`: deleted the key).
    Write(Option<u64>),
    /// Saw this value (`None`: the key did not exist).
    Read(Option<u64>),
    /// A conditional write (`If-Match` with the ETag of `expect`, or `If-None-Match: *` for
    /// `None`) of `value`: `applied` true if it answered 200, false if 412 (the key did not
    /// hold `expect`); an unknown outcome (`completed: None`) may have applied or not.
    CondWrite {
        expect: Option<u64>,
        value: u64,
        applied: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Event {
    pub key: String,
    pub op: Op,
    /// Since the start of the recording.
    pub invoked: Duration,
    /// `None`: outcome unknown (only meaningful for writes; unknown reads are left out).
    pub completed: Option<Duration>,
    /// Which client and gateway ran it, for the report.
    pub client: usize,
    pub gateway: usize,
}

/// Why a history is not linearizable: the key, the operations on it in invocation order (as
/// checked: without those that cannot matter, values no read saw as [`UNSEEN`]), and a short
/// window of them that is not linearizable by itself, whatever the key held before it.
#[derive(Debug)]
pub struct Violation {
    pub key: String,
    pub events: Vec<Event>,
    /// `events[window]` is not linearizable from any state the key could have had at its
    /// start (a witness for the report; the whole of `events` when it cannot be narrowed).
    pub window: std::ops::Range<usize>,
}

impl std::fmt::Display for Event {
    /// One line: `[invoked .. completed] client C via gateway G: op`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = self
            .completed
            .map_or("unknown".to_string(), |c| format!("{:.6}", c.as_secs_f64()));
        write!(
            f,
            "  [{:.6} .. {done}] client {} via gateway {}: {:?}",
            self.invoked.as_secs_f64(),
            self.client,
            self.gateway,
            self.op
        )
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "history of key {:?} is not linearizable ({} operations); operations {}..{} alone \
             are not, from any value the key could hold before them:",
            self.key,
            self.events.len(),
            self.window.start,
            self.window.end
        )?;
        for e in &self.events[self.window.clone()] {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The value an unknown-outcome write of a value no read saw is checked with: all such
/// writes are alike to every operation of the history (no read or condition names their
/// values), so one stand-in value keeps the search small.
pub const UNSEEN: u64 = u64::MAX;

/// Checks every key's history, each starting from `initial` (the key's value before the
/// recording). Unknown-outcome reads are ignored.
pub fn check(events: &[Event], initial: Option<u64>) -> Result<(), Violation> {
    let observed: HashSet<(&str, u64)> = events
        .iter()
        .filter_map(|e| match e.op {
            Op::Read(Some(v)) if e.completed.is_some() => Some((e.key.as_str(), v)),
            _ => None,
        })
        .collect();
    // A refused conditional write (412) observes that the key did *not* hold what it
    // expected, so a write of unknown outcome may explain it even if no read saw its value.
    let refusals: HashSet<&str> = events
        .iter()
        .filter(|e| e.completed.is_some() && matches!(e.op, Op::CondWrite { applied: false, .. }))
        .map(|e| e.key.as_str())
        .collect();
    let mut by_key: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for e in events {
        let key = e.key.as_str();
        let unseen = |v: u64| e.completed.is_none() && !observed.contains(&(key, v));
        let mut e = e.clone();
        match &mut e.op {
            Op::Read(_) if e.completed.is_none() => continue,
            // A write of unknown outcome whose value no read saw can only matter to a refused
            // conditional write (no read can tell it happened); without refusals on the key it
            // may always be placed after everything else, so it is left out.
            Op::Write(Some(v)) | Op::CondWrite { value: v, .. } if unseen(*v) => {
                if !refusals.contains(key) {
                    continue;
                }
                *v = UNSEEN;
            }
            _ => {}
        }
        by_key.entry(key).or_default().push(e);
    }
    for (key, mut ops) in by_key {
        ops.sort_by_key(|e| e.invoked);
        if !register_linearizable(&ops, initial) {
            let window = narrow(&ops, initial);
            return Err(Violation {
                key: key.to_string(),
                events: ops,
                window,
            });
        }
    }
    Ok(())
}

/// Unknown-outcome plain writes of one value are interchangeable: same effect, and no
/// return to respect. Taking them in invocation order loses no linearization, and among
/// search states that differ only in how many of them were used, the one that used fewer
/// can do everything the other can; both keep failed writes from multiplying the search.
struct Twins {
    /// For each operation, the previous (by invocation) twin it must not come before.
    predecessor: Vec<Option<usize>>,
    /// For each operation with at least one twin, the index of its set of twins.
    class: Vec<Option<usize>>,
    n_classes: usize,
}

impl Twins {
    fn of(ops: &[Event]) -> Twins {
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|&i| ops[i].invoked);
        let mut last: BTreeMap<Option<u64>, usize> = BTreeMap::new();
        let mut predecessor = vec![None; ops.len()];
        for i in order {
            if let (Op::Write(v), None) = (&ops[i].op, ops[i].completed) {
                predecessor[i] = last.insert(*v, i);
            }
        }
        let mut class = vec![None; ops.len()];
        let mut classes: BTreeMap<Option<u64>, usize> = BTreeMap::new();
        for (i, e) in ops.iter().enumerate() {
            if let (Op::Write(v), None) = (&e.op, e.completed) {
                let has_twin = predecessor[i].is_some() || predecessor.contains(&Some(i));
                if has_twin {
                    let next = classes.len();
                    class[i] = Some(*classes.entry(*v).or_insert(next));
                }
            }
        }
        Twins {
            predecessor,
            class,
            n_classes: classes.len(),
        }
    }
}

/// Narrows a rejected history (sorted by invocation) to a short window that is rejected by
/// itself: first the shortest rejected prefix, then the latest start from which that prefix's
/// tail is rejected for every value the key could hold there (absent, or any value written
/// before the window's end). Both searches bisect, taking rejection as monotone in the
/// window's length, and each result is checked, so the window returned is always rejected.
fn narrow(ops: &[Event], initial: Option<u64>) -> std::ops::Range<usize> {
    let rejected_prefix = |end: usize| !register_linearizable(&ops[..end], initial);
    // The shortest rejected prefix: the first length at which "accepted" turns to "rejected".
    let shortest = bisect(0, ops.len(), |len| !rejected_prefix(len)) + 1;
    let end = if shortest <= ops.len() && rejected_prefix(shortest) {
        shortest
    } else {
        ops.len()
    };
    let mut states: Vec<Option<u64>> = vec![None, initial];
    states.extend(ops[..end].iter().filter_map(|e| match e.op {
        Op::Write(Some(v)) => Some(Some(v)),
        Op::CondWrite { value, .. } => Some(Some(value)),
        _ => None,
    }));
    states.sort();
    states.dedup();
    let rejected_from = |start: usize| {
        states
            .iter()
            .all(|&s| !register_linearizable(&ops[start..end], s))
    };
    let start = bisect(0, end, rejected_from);
    if rejected_from(start) {
        start..end
    } else {
        0..end
    }
}

/// The last `i` in `lo..hi` for which `holds(i)` is true, taking `holds` as true up to some
/// point and false after it (`lo` if it is false from the start).
fn bisect(mut lo: usize, mut hi: usize, holds: impl Fn(usize) -> bool) -> usize {
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if holds(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// One call or return in the time-ordered list the search walks.
#[derive(Debug, Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// Linked list over the entries still in play.
    prev: usize,
    next: usize,
}

const HEAD: usize = 0;

/// A search state but for the twins used: the other operations linearized (a bit set) and the
/// register's value.
type SearchState = (Vec<u64>, Option<u64>);

fn register_linearizable(ops: &[Event], initial: Option<u64>) -> bool {
    // Entries: a sentinel head, then calls and returns sorted by time (an unknown return at
    // the very end); at equal times returns come after calls, the lenient reading.
    let mut timeline: Vec<(Duration, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, e) in ops.iter().enumerate() {
        timeline.push((e.invoked, true, i));
        timeline.push((e.completed.unwrap_or(Duration::MAX), false, i));
    }
    timeline.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    let n = timeline.len();
    let mut entries: Vec<Entry> = Vec::with_capacity(n + 1);
    entries.push(Entry {
        op: usize::MAX,
        is_call: false,
        prev: HEAD,
        next: 1,
    });
    let mut return_of = vec![0usize; ops.len()];
    for (idx, &(_, is_call, op)) in timeline.iter().enumerate() {
        let pos = idx + 1;
        if !is_call {
            return_of[op] = pos;
        }
        entries.push(Entry {
            op,
            is_call,
            prev: pos - 1,
            next: if pos == n { usize::MAX } else { pos + 1 },
        });
    }
    if n == 0 {
        return true;
    }

    let twins = Twins::of(ops);
    let mut linearized = vec![false; ops.len()];
    // How many twins of each set are linearized; states are kept per the other operations
    // linearized and the value, with the smallest such counts seen (a frontier).
    let mut used = vec![0u32; twins.n_classes];
    let mut cache: HashMap<SearchState, Vec<Vec<u32>>> = HashMap::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut state = initial;
    let mut cursor = entries[HEAD].next;
    // Done once every operation that returned is linearized: those of unknown outcome left
    // over may take effect after everything, or never.
    let n_returned = ops.iter().filter(|e| e.completed.is_some()).count();
    let mut returned = 0;
    let undo = |op: usize, linearized: &mut Vec<bool>, used: &mut Vec<u32>| {
        linearized[op] = false;
        if let Some(c) = twins.class[op] {
            used[c] -= 1;
        }
    };
    while returned < n_returned {
        if cursor == usize::MAX {
            // Walked past every entry without finding a return: backtrack.
            let Some((call, prev_state)) = stack.pop() else {
                return false;
            };
            let op = entries[call].op;
            unlift(&mut entries, call, return_of[op]);
            undo(op, &mut linearized, &mut used);
            returned -= usize::from(ops[op].completed.is_some());
            state = prev_state;
            cursor = entries[call].next;
            continue;
        }
        let entry = entries[cursor];
        if entry.is_call {
            let op = entry.op;
            if twins.predecessor[op].is_some_and(|p| !linearized[p]) {
                cursor = entry.next;
                continue;
            }
            let next_state = match &ops[op].op {
                Op::Write(v) => Some(*v),
                Op::Read(seen) => (*seen == state).then_some(state),
                Op::CondWrite {
                    expect,
                    value,
                    applied,
                } => {
                    let holds = *expect == state;
                    match (ops[op].completed.is_some(), *applied) {
                        // Unknown outcome: applies where the condition holds, else no effect.
                        (false, _) => Some(if holds { Some(*value) } else { state }),
                        (true, true) => holds.then_some(Some(*value)),
                        (true, false) => (!holds).then_some(state),
                    }
                }
            };
            if let Some(next_state) = next_state {
                linearized[op] = true;
                if let Some(c) = twins.class[op] {
                    used[c] += 1;
                }
                let frontier = cache
                    .entry((bits(&linearized, &twins.class), next_state))
                    .or_default();
                let dominated = frontier
                    .iter()
                    .any(|seen| seen.iter().zip(&used).all(|(s, u)| s <= u));
                if !dominated {
                    frontier.push(used.clone());
                    returned += usize::from(ops[op].completed.is_some());
                    stack.push((cursor, state));
                    state = next_state;
                    lift(&mut entries, cursor, return_of[op]);
                    cursor = entries[HEAD].next;
                    continue;
                }
                undo(op, &mut linearized, &mut used);
            }
            cursor = entry.next;
        } else {
            // A return whose call is not linearized yet: this branch is dead.
            let Some((call, prev_state)) = stack.pop() else {
                return false;
            };
            let op = entries[call].op;
            unlift(&mut entries, call, return_of[op]);
            undo(op, &mut linearized, &mut used);
            returned -= usize::from(ops[op].completed.is_some());
            state = prev_state;
            cursor = entries[call].next;
        }
    }
    true
}

/// The linearized operations other than twins, as a bit set.
fn bits(flags: &[bool], class: &[Option<usize>]) -> Vec<u64> {
    let mut out = vec![0u64; flags.len().div_ceil(64)];
    for (i, &f) in flags.iter().enumerate() {
        if f && class[i].is_none() {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

fn unlink(entries: &mut [Entry], at: usize) {
    let Entry { prev, next, .. } = entries[at];
    entries[prev].next = next;
    if next != usize::MAX {
        entries[next].prev = prev;
    }
}

fn relink(entries: &mut [Entry], at: usize) {
    let Entry { prev, next, .. } = entries[at];
    entries[prev].next = at;
    if next != usize::MAX {
        entries[next].prev = at;
    }
}

/// Takes a call and its return out of the list.
fn lift(entries: &mut [Entry], call: usize, ret: usize) {
    unlink(entries, call);
    unlink(entries, ret);
}

/// Puts them back (in the reverse order of [`lift`]).
fn unlift(entries: &mut [Entry], call: usize, ret: usize) {
    relink(entries, ret);
    relink(entries, call);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: Op, from_ms: u64, to_ms: Option<u64>) -> Event {
        Event {
            key: "k".into(),
            op,
            invoked: Duration::from_millis(from_ms),
            completed: to_ms.map(Duration::from_millis),
            client: 0,
            gateway: 0,
        }
    }

    #[test]
    fn sequential_history_that_reads_the_last_write_is_linearizable() {
        let h = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(Op::Read(Some(1)), 20, Some(30)),
            ev(Op::Write(None), 40, Some(50)),
            ev(Op::Read(None), 60, Some(70)),
        ];
        assert!(check(&h, None).is_ok());
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_overwrite_is_caught() {
        // The overwrite through another gateway finished before the read began.
        let h = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(Op::Write(Some(2)), 20, Some(30)),
            ev(Op::Read(Some(1)), 40, Some(50)),
        ];
        let v = check(&h, None).unwrap_err();
        assert_eq!(v.key, "k");
        assert!(v.to_string().contains("Read(Some(1))"));
        // The witness is the overwrite and the stale read: the first write is not needed.
        assert_eq!(v.window, 1..3);
    }

    #[test]
    fn a_lost_delete_is_caught() {
        let h = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(Op::Write(None), 20, Some(30)),
            ev(Op::Read(Some(1)), 40, Some(50)),
        ];
        assert!(check(&h, None).is_err());
    }

    #[test]
    fn conditional_writes_decide_on_the_value_they_meet() {
        let cond = |expect, value, applied| Op::CondWrite {
            expect,
            value,
            applied,
        };
        // Create-if-absent, then compare-and-set from 1 to 2, then a CAS from 1 that must fail.
        let ok = [
            ev(cond(None, 1, true), 0, Some(10)),
            ev(cond(Some(1), 2, true), 20, Some(30)),
            ev(cond(Some(1), 3, false), 40, Some(50)),
            ev(Op::Read(Some(2)), 60, Some(70)),
        ];
        assert!(check(&ok, None).is_ok());
        // Two creates of one key that both succeed, one after the other: the second should
        // have met the first's value (the bug leases exist to prevent).
        let double = [
            ev(cond(None, 1, true), 0, Some(10)),
            ev(cond(None, 2, true), 20, Some(30)),
        ];
        assert!(check(&double, None).is_err());
        // A 412 although the key held exactly the expected value.
        let wrong_refusal = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(cond(Some(1), 2, false), 20, Some(30)),
            ev(Op::Read(Some(1)), 40, Some(50)),
        ];
        assert!(check(&wrong_refusal, None).is_err());
        // Concurrent creates: exactly one may win.
        let race = [
            ev(cond(None, 1, true), 0, Some(100)),
            ev(cond(None, 2, false), 10, Some(90)),
            ev(Op::Read(Some(1)), 120, Some(130)),
        ];
        assert!(check(&race, None).is_ok());
    }

    #[test]
    fn overlapping_writes_may_land_in_either_order() {
        let h = [
            ev(Op::Write(Some(1)), 0, Some(100)),
            ev(Op::Write(Some(2)), 10, Some(90)),
            ev(Op::Read(Some(1)), 120, Some(130)),
            ev(Op::Read(Some(1)), 140, Some(150)),
        ];
        assert!(check(&h, None).is_ok());
    }

    #[test]
    fn reads_may_not_flip_back_once_a_newer_value_was_seen() {
        // The write is concurrent with both reads, but the second read starts after the
        // first saw the new value: it may not see the old one again.
        let h = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(Op::Write(Some(2)), 20, Some(200)),
            ev(Op::Read(Some(2)), 30, Some(40)),
            ev(Op::Read(Some(1)), 50, Some(60)),
        ];
        assert!(check(&h, None).is_err());
    }

    #[test]
    fn a_write_of_unknown_outcome_may_take_effect_late_or_never() {
        let late = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(Op::Write(Some(2)), 20, None),
            ev(Op::Read(Some(1)), 30, Some(40)),
            ev(Op::Read(Some(2)), 500, Some(510)),
        ];
        assert!(check(&late, None).is_ok());
        let never = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(Op::Write(Some(2)), 20, None),
            ev(Op::Read(Some(1)), 30, Some(40)),
        ];
        assert!(check(&never, None).is_ok());
        // But never before it was invoked.
        let early = [
            ev(Op::Read(Some(2)), 0, Some(5)),
            ev(Op::Write(Some(2)), 20, None),
        ];
        assert!(check(&early, None).is_err());
    }

    #[test]
    fn a_refusal_may_be_explained_by_a_write_of_unknown_outcome_nobody_read() {
        let cond = |expect, value, applied| Op::CondWrite {
            expect,
            value,
            applied,
        };
        // The client's own write, then its If-Match on it refused: wrong, unless another
        // write landed in between. Here one may have: it was invoked before the refusal
        // answered and its outcome is unknown, although no read ever saw its value.
        let explained = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(Op::Write(Some(2)), 5, None),
            ev(cond(Some(1), 3, false), 20, Some(30)),
        ];
        assert!(check(&explained, None).is_ok());
        // So may a conditional write of unknown outcome whose condition held.
        let by_cond = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(cond(Some(1), 2, true), 12, None),
            ev(cond(Some(1), 3, false), 20, Some(30)),
        ];
        assert!(check(&by_cond, None).is_ok());
        // Not by one whose condition could not hold, nor by a write invoked after the
        // refusal answered.
        let cannot = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(cond(None, 2, true), 12, None),
            ev(Op::Write(Some(4)), 40, None),
            ev(cond(Some(1), 3, false), 20, Some(30)),
        ];
        assert!(check(&cannot, None).is_err());
        // And once the unknown write is placed before the refusal, the key no longer holds
        // the earlier value: a later read of it is still caught.
        let then_stale = [
            ev(Op::Write(Some(1)), 0, Some(10)),
            ev(Op::Write(Some(2)), 5, None),
            ev(cond(Some(1), 3, false), 20, Some(30)),
            ev(Op::Read(Some(1)), 40, Some(50)),
        ];
        assert!(check(&then_stale, None).is_err());
    }

    #[test]
    fn many_unknown_writes_beside_refusals_do_not_stall_the_search() {
        let cond = |expect, value, applied| Op::CondWrite {
            expect,
            value,
            applied,
        };
        let mut h = vec![ev(Op::Write(Some(0)), 0, Some(10))];
        for i in 1..100u64 {
            h.push(ev(Op::Write(Some(i)), 10 * i, None));
            h.push(ev(Op::Write(None), 10 * i + 1, None));
            h.push(ev(
                cond(Some(0), 1000 + i, false),
                10 * i + 2,
                Some(10 * i + 3),
            ));
        }
        assert!(check(&h, None).is_ok());
        // Once a read saw the key absent, nothing is left that explains a read of 0.
        h.push(ev(Op::Read(None), 2000, Some(2001)));
        h.push(ev(Op::Read(Some(0)), 2002, Some(2003)));
        assert!(check(&h, None).is_err());
    }

    #[test]
    fn many_writes_of_unknown_outcome_do_not_stall_the_search() {
        let mut h = vec![ev(Op::Write(Some(0)), 0, Some(10))];
        for i in 1..200u64 {
            h.push(ev(Op::Write(Some(i)), 10 * i, None));
            h.push(ev(Op::Read(Some(0)), 10 * i + 1, Some(10 * i + 2)));
        }
        assert!(check(&h, None).is_ok());
        h.push(ev(Op::Read(Some(150)), 5000, Some(5001)));
        h.push(ev(Op::Read(Some(0)), 5002, Some(5003)));
        assert!(
            check(&h, None).is_err(),
            "once 150 was seen, 0 cannot come back"
        );
    }

    #[test]
    fn keys_are_independent_registers_and_the_initial_value_counts() {
        let mut other = ev(Op::Read(Some(7)), 0, Some(5));
        other.key = "other".into();
        let h = [ev(Op::Read(Some(7)), 0, Some(5)), other];
        assert!(check(&h, Some(7)).is_ok());
        assert!(check(&h, None).is_err());
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // 4 clients, 400 operations, every read sees the latest completed write (the
        // memoized search keeps this fast).
        let mut h = Vec::new();
        let mut last = None;
        for i in 0..100u64 {
            let t = i * 40;
            h.push(ev(Op::Write(Some(i)), t, Some(t + 25)));
            h.push(ev(Op::Read(last), t, Some(t + 15)));
            h.push(ev(Op::Read(Some(i)), t + 26, Some(t + 39)));
            h.push(ev(Op::Read(last.or(Some(i))), t + 1, Some(t + 30)));
            last = Some(i);
        }
        assert!(check(&h, None).is_ok());
        // And one stale read among them is still found.
        h.push(ev(Op::Read(Some(3)), 100 * 40, Some(100 * 40 + 5)));
        let v = check(&h, None).unwrap_err();
        // The report narrows 401 operations to the stale read and the writes that rule it out.
        assert!(v.window.len() <= 10, "window {:?}", v.window);
        assert!(v.events[v.window.clone()]
            .iter()
            .any(|e| e.op == Op::Read(Some(3))));
    }
}
