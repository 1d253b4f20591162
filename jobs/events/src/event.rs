//! S3 "object created" events in the three shapes they arrive in (DESIGN.md §5): an S3
//! notification (`Records[]`), an EventBridge "Object Created" event, or either wrapped in an
//! SQS message (`body`/`Body`, one message or an SQS batch's `Records[]`). Pure parsing; the
//! job decides what to do with each object.

use std::cmp::Ordering;

use serde_json::Value;

/// One created object an event names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key (an S3 notification's `+` and `%XX` undone).
    pub key: String,
    pub size: Option<u64>,
    /// Without quotes.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
}

impl ObjectRef {
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event is not JSON: {0}")]
    Json(String),
    #[error("not an S3 object-created event: {0}")]
    Shape(String),
}

/// Deepest SQS-in-SQS wrapping followed (a body holding a body …).
const MAX_WRAPPING: usize = 4;

/// The created objects `text` names, in event order. Test events (`s3:TestEvent`) and other
/// event names (`ObjectRemoved:*`) name none.
pub fn parse(text: &str) -> Result<Vec<ObjectRef>, EventError> {
    let value: Value = serde_json::from_str(text).map_err(|e| EventError::Json(e.to_string()))?;
    let mut out = Vec::new();
    collect(&value, 0, &mut out)?;
    Ok(out)
}

fn collect(v: &Value, depth: usize, out: &mut Vec<ObjectRef>) -> Result<(), EventError> {
    if depth > MAX_WRAPPING {
        return Err(EventError::Shape("SQS bodies nested too deep".into()));
    }
    let Some(obj) = v.as_object() else {
        return Err(EventError::Shape("the event is not a JSON object".into()));
    };
    // s3:TestEvent, sent when a notification configuration is saved.
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(());
    }
    // EventBridge.
    if obj.get("source").and_then(Value::as_str) == Some("aws.s3") {
        let detail_type = obj.get("detail-type").and_then(Value::as_str).unwrap_or("");
        if detail_type != "Object Created" {
            return Ok(());
        }
        let detail = obj
            .get("detail")
            .ok_or_else(|| EventError::Shape("EventBridge event without detail".into()))?;
        let bucket = str_at(detail, &["bucket", "name"]).ok_or_else(|| {
            EventError::Shape("EventBridge event without detail.bucket.name".into())
        })?;
        let object = detail
            .get("object")
            .ok_or_else(|| EventError::Shape("EventBridge event without detail.object".into()))?;
        let key = str_at(object, &["key"]).ok_or_else(|| {
            EventError::Shape("EventBridge event without detail.object.key".into())
        })?;
        out.push(ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: object.get("size").and_then(Value::as_u64),
            etag: str_at(object, &["etag"]).map(unquote),
            version_id: str_at(object, &["version-id"]).map(str::to_owned),
            sequencer: str_at(object, &["sequencer"]).map(str::to_owned),
        });
        return Ok(());
    }
    // One SQS message as ReceiveMessage returns it.
    if let Some(body) = obj.get("Body").or_else(|| obj.get("body")) {
        return collect_body(body, depth, out);
    }
    if let Some(records) = obj.get("Records") {
        let records = records
            .as_array()
            .ok_or_else(|| EventError::Shape("Records is not an array".into()))?;
        for (i, r) in records.iter().enumerate() {
            let source = r.get("eventSource").and_then(Value::as_str).unwrap_or("");
            match source {
                "aws:s3" => {
                    if let Some(o) =
                        s3_record(r).map_err(|e| EventError::Shape(format!("Records[{i}]: {e}")))?
                    {
                        out.push(o);
                    }
                }
                "aws:sqs" => {
                    let body = r.get("body").ok_or_else(|| {
                        EventError::Shape(format!("Records[{i}]: SQS record without body"))
                    })?;
                    collect_body(body, depth, out)?;
                }
                other => {
                    return Err(EventError::Shape(format!(
                        "Records[{i}]: eventSource {other:?} is neither aws:s3 nor aws:sqs"
                    )));
                }
            }
        }
        return Ok(());
    }
    Err(EventError::Shape(
        "neither Records (S3 notification, SQS batch), an EventBridge aws.s3 event nor an SQS message body"
            .into(),
    ))
}

fn collect_body(body: &Value, depth: usize, out: &mut Vec<ObjectRef>) -> Result<(), EventError> {
    match body {
        Value::String(s) => {
            let inner: Value =
                serde_json::from_str(s).map_err(|e| EventError::Json(format!("SQS body: {e}")))?;
            collect(&inner, depth + 1, out)
        }
        other => collect(other, depth + 1, out),
    }
}

fn s3_record(r: &Value) -> Result<Option<ObjectRef>, String> {
    let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
    if !name.starts_with("ObjectCreated:") {
        return Ok(None);
    }
    let bucket = str_at(r, &["s3", "bucket", "name"]).ok_or("no s3.bucket.name")?;
    let object = r
        .get("s3")
        .and_then(|s| s.get("object"))
        .ok_or("no s3.object")?;
    let raw_key = str_at(object, &["key"]).ok_or("no s3.object.key")?;
    let key =
        decode_key(raw_key).ok_or_else(|| format!("key {raw_key:?} is not valid URL encoding"))?;
    Ok(Some(ObjectRef {
        bucket: bucket.to_owned(),
        key,
        size: object.get("size").and_then(Value::as_u64),
        etag: str_at(object, &["eTag"]).map(unquote),
        version_id: str_at(object, &["versionId"]).map(str::to_owned),
        sequencer: str_at(object, &["sequencer"]).map(str::to_owned),
    }))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_owned()
}

/// An S3 notification's key: `+` is a space, then percent-decoding (UTF-8).
pub fn decode_key(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Orders two sequencers of events on the same key: hexadecimal strings of possibly different
/// lengths, compared after right-padding the shorter with zeros (as S3 documents).
pub fn sequencer_cmp(a: &str, b: &str) -> Ordering {
    let len = a.len().max(b.len());
    let pad = |s: &str| -> String {
        let mut s = s.to_ascii_uppercase();
        while s.len() < len {
            s.push('0');
        }
        s
    };
    pad(a).cmp(&pad(b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn keys_decode_plus_then_percent() {
        assert_eq!(
            decode_key("import/my+file%2B1.kml").unwrap(),
            "import/my file+1.kml"
        );
        assert_eq!(decode_key("caf%C3%A9.gpx").unwrap(), "café.gpx");
        assert_eq!(decode_key("bad%zz"), None);
        assert_eq!(decode_key("cut%4"), None);
    }

    #[test]
    fn sequencers_compare_right_padded() {
        assert_eq!(
            sequencer_cmp("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Ordering::Less
        );
        assert_eq!(
            sequencer_cmp("0055AED6DCD9028", "0055AED6DCD90281E5"),
            Ordering::Less
        );
        assert_eq!(
            sequencer_cmp("0055AED6DCD90290", "0055AED6DCD90281E5"),
            Ordering::Greater
        );
        assert_eq!(sequencer_cmp("00aa", "00AA"), Ordering::Equal);
    }

    #[test]
    fn test_events_and_removals_name_nothing() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-04T00:00:00Z","Bucket":"b"}"#;
        assert!(parse(test).unwrap().is_empty());
        let removed = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#;
        assert!(parse(removed).unwrap().is_empty());
    }

    #[test]
    fn shapes_that_are_not_events_are_errors() {
        assert!(matches!(parse("nope"), Err(EventError::Json(_))));
        assert!(matches!(parse("[1]"), Err(EventError::Shape(_))));
        assert!(matches!(parse(r#"{"a":1}"#), Err(EventError::Shape(_))));
        let deep = (0..10).fold(r#"{"a":1}"#.to_string(), |acc, _| {
            serde_json::json!({ "Body": acc }).to_string()
        });
        assert!(matches!(parse(&deep), Err(EventError::Shape(_))));
    }

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../fixtures/events/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn s3_notification_fixture() {
        let objs = parse(&fixture("s3-notification.json")).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].bucket, "uploads");
        assert_eq!(objs[0].key, "import/team alpha/routeé 1.kml");
        assert_eq!(objs[0].size, Some(1024));
        assert_eq!(
            objs[0].etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            objs[0].version_id.as_deref(),
            Some("096fKKXTRTtl3on89fVO.nfljtsv6qko")
        );
        assert_eq!(objs[0].sequencer.as_deref(), Some("0055AED6DCD90281E5"));
        assert_eq!(
            objs[1].etag.as_deref(),
            Some("9b2cf535f27731c974343645a3985328-2")
        );
        assert_eq!(objs[1].version_id, None);
    }

    #[test]
    fn eventbridge_fixture_matches_the_notification() {
        let eb = parse(&fixture("eventbridge.json")).unwrap();
        let s3 = parse(&fixture("s3-notification.json")).unwrap();
        assert_eq!(eb, vec![s3[0].clone()]);
    }

    #[test]
    fn sqs_wrapped_fixtures() {
        let batch = parse(&fixture("sqs-batch.json")).unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch[2].key, "import/team alpha/routeé 1.kml");
        let one = parse(&fixture("sqs-message.json")).unwrap();
        assert_eq!(one.len(), 1);
        assert!(parse(&fixture("s3-test-event.json")).unwrap().is_empty());
    }
}
