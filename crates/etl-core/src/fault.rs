//! Named fault points for the durability tests: `ETL_FAULT=publish.after_outputs` (or
//! `name@N` for its N-th hit, several separated by commas) makes the process die at that point
//! as `kill -9` would — no destructor, no clean-up, no flush. Only builds with the
//! `fault-injection` feature read the variable (the jobs turn it on for their own tests through a
//! dev-dependency); in every other build [`point`] and [`hit`] are empty and `ETL_FAULT` is
//! ignored, so a production binary cannot be made to die this way.

/// Whether the fault `name` is armed for this hit (counts hits of `name` per process).
#[cfg(feature = "fault-injection")]
pub fn hit(name: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static HITS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    let Ok(spec) = std::env::var("ETL_FAULT") else {
        return false;
    };
    let n = match HITS.lock() {
        Ok(mut guard) => {
            let map = guard.get_or_insert_with(HashMap::new);
            let count = map.entry(name.to_owned()).or_insert(0);
            *count += 1;
            *count
        }
        Err(_) => return false,
    };
    armed(&spec, name, n)
}

/// Without the feature nothing is ever armed.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn hit(_name: &str) -> bool {
    false
}

/// Dies at `name` when it is armed: SIGABRT, which like SIGKILL runs no destructor and flushes
/// nothing, so whatever the process had not made durable is lost.
pub fn point(name: &str) {
    if hit(name) {
        eprintln!("fault injected at {name}: aborting");
        std::process::abort();
    }
}

/// Waits at `name` when `ETL_FAULT` holds `name=GATE`: the `n`-th hit creates `GATE.n.reached`
/// and waits (up to two minutes) until a test creates `GATE.n`. Lets a test hold two workers at
/// the same point and release them in the order it chooses, with no sleeps on its side.
#[cfg(feature = "fault-injection")]
pub async fn pause(name: &str) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static HITS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    let Ok(spec) = std::env::var("ETL_FAULT") else {
        return;
    };
    let Some(gate) = spec.split(',').find_map(|item| {
        let (point, gate) = item.split_once('=')?;
        (point.trim() == name).then(|| gate.trim().to_owned())
    }) else {
        return;
    };
    let n = match HITS.lock() {
        Ok(mut guard) => {
            let count = guard
                .get_or_insert_with(HashMap::new)
                .entry(name.to_owned())
                .or_insert(0);
            *count += 1;
            *count
        }
        Err(_) => return,
    };
    let open = std::path::PathBuf::from(format!("{gate}.{n}"));
    if let Err(e) = std::fs::write(format!("{gate}.{n}.reached"), b"") {
        eprintln!("fault pause at {name}: cannot mark the point reached: {e}");
        return;
    }
    let start = std::time::Instant::now();
    while !open.exists() && start.elapsed() < std::time::Duration::from_secs(120) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Without the feature nothing ever waits.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub async fn pause(_name: &str) {}

/// Pure: whether `spec` (`a,b@2,…`) arms the `n`-th hit of `name`.
pub fn armed(spec: &str, name: &str, n: u64) -> bool {
    spec.split(',')
        .map(str::trim)
        .any(|item| match item.split_once('@') {
            Some((point, at)) => point == name && at.parse::<u64>().is_ok_and(|at| at == n),
            None => item == name,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(armed("publish.after_outputs", "publish.after_outputs", 1));
        assert!(armed("publish.after_outputs", "publish.after_outputs", 7));
        assert!(!armed(
            "publish.after_outputs",
            "publish.before_manifest",
            1
        ));
        assert!(armed("a, b@2", "b", 2));
        assert!(!armed("a,b@2", "b", 1));
        assert!(!armed("b@x", "b", 1));
        assert!(!armed("", "b", 1));
    }
}
