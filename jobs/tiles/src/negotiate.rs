//! Conditional requests and content codings, as pure functions: `If-None-Match` against a
//! strong ETag, `Accept-Encoding` for gzip pass-through, `Range` for raw archive reads.

/// Whether an `If-None-Match` header value matches `etag` (weak comparison, as RFC 9110 asks for
/// `If-None-Match`: `W/"x"` matches `"x"`).
pub fn none_match(header: &str, etag: &str) -> bool {
    let etag = etag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

/// Whether the client takes `coding` (e.g. "gzip") per its `Accept-Encoding`. No header means
/// any coding is acceptable (RFC 9110 §12.5.3); `coding;q=0` refuses it, and `*` stands for
/// codings not named.
pub fn accepts(header: Option<&str>, coding: &str) -> bool {
    let Some(header) = header else {
        return true;
    };
    let mut star: Option<bool> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case(coding)
            || (coding == "gzip" && name.eq_ignore_ascii_case("x-gzip"))
        {
            return !q_zero;
        }
        if name == "*" {
            star = Some(!q_zero);
        }
    }
    star.unwrap_or(false)
}

/// A byte range asked for with `Range: bytes=…`, resolved against the length of the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: serve the whole resource (also for multi-range requests, which a server
    /// may answer whole).
    Whole,
    /// `start..start+len`.
    Part { start: u64, len: u64 },
    /// 416: no byte of the range lies within the resource.
    Unsatisfiable,
}

pub fn range(header: Option<&str>, total: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if a.is_empty() {
        // Suffix: the last N bytes.
        return match num(b) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(n) if total > 0 => {
                let len = n.min(total);
                RangeRequest::Part {
                    start: total - len,
                    len,
                }
            }
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Whole,
        };
    }
    let Some(start) = num(a) else {
        return RangeRequest::Whole;
    };
    if start >= total {
        return RangeRequest::Unsatisfiable;
    }
    let end = if b.is_empty() {
        total - 1
    } else {
        match num(b) {
            Some(end) if end >= start => end.min(total - 1),
            _ => return RangeRequest::Whole,
        }
    };
    RangeRequest::Part {
        start,
        len: end - start + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert!(none_match("\"abc\"", "\"abc\""));
        assert!(none_match("W/\"abc\"", "\"abc\""));
        assert!(none_match("\"x\", \"abc\"", "\"abc\""));
        assert!(none_match("*", "\"abc\""));
        assert!(!none_match("\"abcd\"", "\"abc\""));
        assert!(!none_match("", "\"abc\""));
    }

    #[test]
    fn encodings() {
        assert!(accepts(None, "gzip"));
        assert!(accepts(Some("gzip, deflate, br"), "gzip"));
        assert!(accepts(Some("GZIP"), "gzip"));
        assert!(accepts(Some("x-gzip"), "gzip"));
        assert!(!accepts(Some("identity"), "gzip"));
        assert!(!accepts(Some(""), "gzip"));
        assert!(!accepts(Some("gzip;q=0"), "gzip"));
        assert!(!accepts(Some("gzip; q=0.0, br"), "gzip"));
        assert!(accepts(Some("gzip;q=0.5"), "gzip"));
        assert!(accepts(Some("*"), "gzip"));
        assert!(!accepts(Some("*;q=0"), "gzip"));
        assert!(!accepts(Some("*, gzip;q=0"), "gzip"));
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(range(None, 100), Whole);
        assert_eq!(range(Some("bytes=0-9"), 100), Part { start: 0, len: 10 });
        assert_eq!(range(Some("bytes=90-"), 100), Part { start: 90, len: 10 });
        assert_eq!(
            range(Some("bytes=90-500"), 100),
            Part { start: 90, len: 10 }
        );
        assert_eq!(range(Some("bytes=-10"), 100), Part { start: 90, len: 10 });
        assert_eq!(range(Some("bytes=-500"), 100), Part { start: 0, len: 100 });
        assert_eq!(range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(range(Some("bytes=5-1"), 100), Whole);
        assert_eq!(range(Some("bytes=0-1,5-6"), 100), Whole);
        assert_eq!(range(Some("items=0-1"), 100), Whole);
        assert_eq!(range(Some("bytes=x-1"), 100), Whole);
    }

    proptest::proptest! {
        // Any Range header resolves to a part inside the resource, the whole, or a 416.
        #[test]
        fn ranges_stay_inside(h in ".{0,30}", total in 0u64..10_000) {
            if let RangeRequest::Part { start, len } = range(Some(&h), total) {
                proptest::prop_assert!(len > 0 && start + len <= total);
            }
            let _ = accepts(Some(&h), "gzip");
            let _ = none_match(&h, "\"x\"");
        }
    }
}
