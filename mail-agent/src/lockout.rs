//! The failed-login lockout (pure; time is an argument): `failures` failed logins within
//! `window` lock the login for `duration`, as Zimbra's "failed login policy" does.
//!
//! - A failure while the login is locked is not counted (an attacker cannot keep it locked
//!   forever by hammering it; the lock ends `duration` after it began).
//! - A successful login clears the failures counted so far.
//! - Failures older than the window are forgotten.
//!
//! The book is persisted by the policy service after every change (see `store`), so a lock
//! survives a restart or a failover.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Policy;

/// The largest failure count that can be configured; each login keeps at most this many
/// timestamps, so an entry's size is bounded whatever an attacker sends.
pub const MAX_FAILURES_TRACKED: u32 = 100;

/// How many logins the book tracks at most. At the bound, the entry whose last failure is
/// oldest (and that is not locked, if any such exists) is forgotten first: a flood of failures
/// for random names cannot grow the state file without limit, and it evicts stale entries
/// before it can evict a current lock.
pub const MAX_LOGINS_TRACKED: usize = 10_000;

/// The lockout rules, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Failures that lock (0: lockout disabled).
    pub failures: u32,
    /// Window, in seconds.
    pub window_s: u64,
    /// Lock length, in seconds.
    pub duration_s: u64,
}

impl From<&Policy> for Rules {
    fn from(p: &Policy) -> Rules {
        Rules {
            failures: p.lockout_failures.min(MAX_FAILURES_TRACKED),
            window_s: p.lockout_window.secs,
            duration_s: p.lockout_duration.secs,
        }
    }
}

/// One login's failures and lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Times (Unix seconds) of the failures still inside the window, oldest first.
    pub failures: Vec<u64>,
    /// The lock's end (Unix seconds), if locked.
    pub locked_until: Option<u64>,
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted; this many failures are now inside the window.
    Counted(u32),
    /// This failure locked the login until the given time.
    Locked(u64),
    /// The login was already locked; not counted.
    AlreadyLocked(u64),
    /// Lockout is disabled.
    Disabled,
}

/// Every login's failures and locks, by login name (lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    /// The entries.
    pub entries: BTreeMap<String, Entry>,
}

/// Login names are compared case-insensitively, as Dovecot's lookups in our passwd-file are.
pub fn key(login: &str) -> String {
    login.trim().to_ascii_lowercase()
}

impl Book {
    /// When the login's lock ends, if it is locked at `now`.
    pub fn locked_until(&self, login: &str, now: u64) -> Option<u64> {
        self.entries
            .get(&key(login))
            .and_then(|e| e.locked_until)
            .filter(|&until| until > now)
    }

    /// Failures counted for `login` inside the window ending at `now`.
    pub fn failures(&self, login: &str, now: u64, rules: Rules) -> u32 {
        self.entries.get(&key(login)).map_or(0, |e| {
            let n = e
                .failures
                .iter()
                .filter(|&&t| t + rules.window_s > now)
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
    }

    /// Records a failed login at `now`.
    pub fn record_failure(&mut self, login: &str, now: u64, rules: Rules) -> Outcome {
        if rules.failures == 0 {
            return Outcome::Disabled;
        }
        if let Some(until) = self.locked_until(login, now) {
            return Outcome::AlreadyLocked(until);
        }
        let k = key(login);
        if !self.entries.contains_key(&k) {
            self.make_room(now);
        }
        let e = self.entries.entry(k).or_default();
        e.locked_until = None;
        e.failures.retain(|&t| t + rules.window_s > now && t <= now);
        e.failures.push(now);
        let n = e.failures.len();
        let max = usize::try_from(rules.failures).unwrap_or(usize::MAX);
        if n >= max {
            let until = now.saturating_add(rules.duration_s);
            e.failures.clear();
            e.locked_until = Some(until);
            debug_assert!(self.locked_until(login, now).is_some());
            return Outcome::Locked(until);
        }
        debug_assert!(n <= MAX_FAILURES_TRACKED as usize);
        Outcome::Counted(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Records a successful login: its failures are forgotten (a lock stays).
    pub fn record_success(&mut self, login: &str, now: u64) {
        let k = key(login);
        let locked = self.locked_until(&k, now).is_some();
        if !locked {
            self.entries.remove(&k);
        }
    }

    /// Lifts a lock and forgets the failures (the administrator's `unlock`). Returns whether
    /// there was anything to forget.
    pub fn unlock(&mut self, login: &str) -> bool {
        self.entries.remove(&key(login)).is_some()
    }

    /// Drops what no longer matters at `now`: ended locks and failures outside the window.
    pub fn prune(&mut self, now: u64, rules: Rules) {
        self.entries.retain(|_, e| {
            if e.locked_until.is_some_and(|u| u <= now) {
                e.locked_until = None;
            }
            e.failures.retain(|&t| t + rules.window_s > now);
            e.locked_until.is_some() || !e.failures.is_empty()
        });
    }

    fn make_room(&mut self, now: u64) {
        while self.entries.len() >= MAX_LOGINS_TRACKED {
            let victim = self
                .entries
                .iter()
                .min_by_key(|(_, e)| {
                    (
                        e.locked_until.is_some_and(|u| u > now),
                        e.failures.last().copied().unwrap_or(0),
                    )
                })
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THESIS: Rules = Rules {
        failures: 5,
        window_s: 3600,
        duration_s: 3600,
    };

    #[test]
    fn five_failures_within_the_hour_lock_for_an_hour() {
        let mut b = Book::default();
        for i in 1..=4 {
            assert_eq!(
                b.record_failure("Alice@Example.com", 1000 + i * 60, THESIS),
                Outcome::Counted(u32::try_from(i).unwrap())
            );
            assert_eq!(b.locked_until("alice@example.com", 1000 + i * 60), None);
        }
        assert_eq!(
            b.record_failure("alice@example.com", 1300, THESIS),
            Outcome::Locked(4900)
        );
        assert_eq!(b.locked_until("alice@example.com", 1301), Some(4900));
        assert_eq!(b.locked_until("alice@example.com", 4899), Some(4900));
        assert_eq!(b.locked_until("alice@example.com", 4900), None);
        // Other logins are untouched.
        assert_eq!(b.locked_until("bob@example.com", 1301), None);
    }

    #[test]
    fn failures_while_locked_do_not_extend_the_lock() {
        let mut b = Book::default();
        for t in 0..5 {
            b.record_failure("a", t, THESIS);
        }
        assert_eq!(
            b.record_failure("a", 100, THESIS),
            Outcome::AlreadyLocked(3604)
        );
        assert_eq!(b.locked_until("a", 3603), Some(3604));
        // After the lock ends, counting starts from zero.
        assert_eq!(b.record_failure("a", 3604, THESIS), Outcome::Counted(1));
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let mut b = Book::default();
        for t in [0, 1000, 2000, 3000] {
            b.record_failure("a", t, THESIS);
        }
        // The failure at 0 left the window at 3600.
        assert_eq!(b.record_failure("a", 3600, THESIS), Outcome::Counted(4));
        assert_eq!(b.record_failure("a", 3601, THESIS), Outcome::Locked(7201));
    }

    #[test]
    fn success_clears_failures_but_not_a_lock() {
        let mut b = Book::default();
        for t in 0..4 {
            b.record_failure("a", t, THESIS);
        }
        b.record_success("a", 10);
        assert_eq!(b.record_failure("a", 11, THESIS), Outcome::Counted(1));
        for t in 12..16 {
            b.record_failure("a", t, THESIS);
        }
        assert!(b.locked_until("a", 16).is_some());
        b.record_success("a", 17);
        assert!(b.locked_until("a", 17).is_some());
        assert!(b.unlock("a"));
        assert_eq!(b.locked_until("a", 17), None);
        assert!(!b.unlock("a"));
    }

    #[test]
    fn disabled_and_pruned() {
        let mut b = Book::default();
        assert_eq!(
            b.record_failure(
                "a",
                0,
                Rules {
                    failures: 0,
                    ..THESIS
                }
            ),
            Outcome::Disabled
        );
        b.record_failure("a", 0, THESIS);
        b.record_failure("b", 0, THESIS);
        for t in 0..5 {
            b.record_failure("c", t, THESIS);
        }
        b.prune(3600, THESIS);
        assert_eq!(b.entries.keys().collect::<Vec<_>>(), vec!["c"]);
        b.prune(3604, THESIS);
        assert!(b.entries.is_empty());
    }

    #[test]
    fn the_book_is_bounded_and_evicts_stale_entries_before_locks() {
        let long = Rules {
            duration_s: 1_000_000,
            ..THESIS
        };
        let mut b = Book::default();
        for t in 0..5 {
            b.record_failure("locked", t, long);
        }
        for i in 0..MAX_LOGINS_TRACKED + 50 {
            b.record_failure(&format!("u{i}"), 10 + i as u64, long);
        }
        assert_eq!(b.entries.len(), MAX_LOGINS_TRACKED);
        assert!(b.locked_until("locked", 100).is_some());
    }

    proptest::proptest! {
        /// Against a simple oracle: locked at `now` iff some failure locked it less than
        /// `duration` ago, where a failure locks when it is the `failures`-th counted one in
        /// the window since the last lock or success.
        #[test]
        fn matches_a_replay_oracle(events in proptest::collection::vec((0u64..40, proptest::bool::ANY), 1..60)) {
            let rules = Rules { failures: 3, window_s: 10, duration_s: 7 };
            let mut b = Book::default();
            let mut now = 0u64;
            let mut counted: Vec<u64> = Vec::new();
            let mut lock_end: Option<u64> = None;
            for (dt, fail) in events {
                now += dt % 5;
                if fail {
                    let locked = lock_end.is_some_and(|u| u > now);
                    let out = b.record_failure("x", now, rules);
                    if locked {
                        proptest::prop_assert_eq!(out, Outcome::AlreadyLocked(lock_end.unwrap()));
                    } else {
                        counted.retain(|&t| t + rules.window_s > now);
                        counted.push(now);
                        if counted.len() >= 3 {
                            counted.clear();
                            lock_end = Some(now + 7);
                            proptest::prop_assert_eq!(out, Outcome::Locked(now + 7));
                        } else {
                            proptest::prop_assert_eq!(out, Outcome::Counted(u32::try_from(counted.len()).unwrap()));
                        }
                    }
                } else {
                    b.record_success("x", now);
                    if lock_end.is_none_or(|u| u <= now) {
                        counted.clear();
                    }
                }
                proptest::prop_assert_eq!(b.locked_until("x", now), lock_end.filter(|&u| u > now));
            }
        }
    }
}
