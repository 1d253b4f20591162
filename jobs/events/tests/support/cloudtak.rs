//! A loopback stand-in of the CloudTAK API routes the import worker calls, written from
//! `../shared/cloudtak-contract.md` and CloudTAK's route schemas: tokens checked as
//! `api/common/auth.ts` checks them, the import status rules of `control/import.ts`, asset
//! creation that HEADs the uploaded objects in S3, the `{status,message,messages}` error shape,
//! and a record of every call (method, path, query, token claims, body) for tests to assert.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use etl_core::store::{Location, Store};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// One call as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The token's claims, and whether it was an `etl.` token.
    pub claims: Value,
    pub etl: bool,
    pub status: u16,
    pub body: Value,
}

#[derive(Default)]
pub struct State {
    pub imports: BTreeMap<String, Value>,
    pub assets: BTreeMap<String, Value>,
    pub features: BTreeMap<(String, String), Value>,
    pub iconsets: BTreeMap<String, Value>,
    pub icons: Vec<Value>,
    pub basemaps: Vec<Value>,
    pub calls: Vec<Call>,
    clock: u64,
}

pub struct CloudTak {
    pub url: String,
    pub secret: String,
    pub bucket: String,
    state: Arc<(Mutex<State>, Condvar)>,
    _rt: tokio::runtime::Runtime,
}

/// Now as CloudTAK's API shows `updated`: PostgreSQL's text form of a `timestamptz`, which
/// drizzle's string mode passes through.
fn now_iso(offset_s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_s))
        .format("%Y-%m-%d %H:%M:%S%.3f+00")
        .to_string()
}

impl CloudTak {
    pub fn start(secret: &str, bucket: &str, store: Store) -> CloudTak {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: state.clone(),
            secret: secret.to_owned(),
            bucket: bucket.to_owned(),
            store,
        });
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.handle(req).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        eprintln!("stand-in connection: {e}");
                    }
                });
            }
        });
        CloudTak {
            url: format!("http://{addr}"),
            secret: secret.to_owned(),
            bucket: bucket.to_owned(),
            state,
            _rt: rt,
        }
    }

    /// A Pending import row (its upload must be put at `import/<id><ext>` by the test).
    pub fn add_import(&self, id: &str, name: &str, user: &str) {
        let mut s = self.state.0.lock().unwrap();
        s.clock += 1;
        let created = format!("2026-12-08T00:00:{:02}.000Z", s.clock % 60);
        s.imports.insert(
            id.to_owned(),
            json!({"id": id, "created": created, "updated": now_iso(0), "name": name,
                   "status": "Pending", "error": null, "username": user, "source": "Upload",
                   "source_id": null, "config": {}, "results": []}),
        );
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.0.lock().unwrap()
    }

    /// Waits (up to `limit`) until `done` holds for the state; every call wakes the check.
    pub fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&State) -> bool) {
        let (lock, cv) = &*self.state;
        let start = std::time::Instant::now();
        let mut s = lock.lock().unwrap();
        while !done(&s) {
            let left = limit
                .checked_sub(start.elapsed())
                .unwrap_or_else(|| panic!("timed out waiting for {what}; calls: {:#?}", s.calls));
            s = cv
                .wait_timeout(s, left.min(Duration::from_secs(1)))
                .unwrap()
                .0;
        }
    }

    pub fn status(&self, id: &str) -> String {
        self.state().imports[id]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The calls about one import: its PATCHes and results, and (by the owner) everything
    /// else made while it ran is in `calls` too.
    pub fn calls_for(&self, id: &str) -> Vec<Call> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.path.contains(id))
            .cloned()
            .collect()
    }
}

struct Shared {
    state: Arc<(Mutex<State>, Condvar)>,
    secret: String,
    bucket: String,
    store: Store,
}

fn reply(status: u16, body: Value) -> (u16, Value) {
    (status, body)
}

fn err(status: u16, message: &str) -> (u16, Value) {
    (
        status,
        json!({"status": status, "message": message, "messages": []}),
    )
}

fn query_of(q: &str, key: &str) -> Option<String> {
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

impl Shared {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let json_type = req
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let bytes = req.into_body().collect().await.unwrap().to_bytes();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let (etl, claims) = self.claims(&auth);
        let (status, out) = if claims.is_null() {
            err(401, "Authentication Required")
        } else if !bytes.is_empty() && !json_type {
            err(400, "Content-Type not supported")
        } else {
            self.route(&method, &path, &query, etl, &claims, &body)
                .await
        };
        {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock().unwrap();
            s.calls.push(Call {
                method,
                path,
                query,
                claims,
                etl,
                status,
                body,
            });
            cv.notify_all();
        }
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(out.to_string())))
            .unwrap()
    }

    fn claims(&self, auth: &str) -> (bool, Value) {
        let Some(token) = auth.strip_prefix("Bearer ") else {
            return (false, Value::Null);
        };
        let (etl, jwt) = match token.strip_prefix("etl.") {
            Some(t) => (true, t),
            None => (false, token),
        };
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        match jsonwebtoken::decode::<Value>(
            jwt,
            &jsonwebtoken::DecodingKey::from_secret(self.secret.as_bytes()).unwrap(),
            &v,
        ) {
            Ok(d) => (etl, d.claims),
            Err(_) => (false, Value::Null),
        }
    }

    async fn head(&self, key: &str) -> Option<u64> {
        let loc = Location::S3 {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        };
        self.store.head(&loc).await.ok().map(|m| m.size)
    }

    /// Who the caller is: the worker for `import` (its token's id, when given, must be the
    /// import of the path), or a user's email.
    fn user(claims: &Value) -> Option<String> {
        (claims["access"] == "user")
            .then(|| claims["email"].as_str().map(str::to_owned))
            .flatten()
    }

    async fn route(
        &self,
        method: &str,
        path: &str,
        query: &str,
        etl: bool,
        claims: &Value,
        body: &Value,
    ) -> (u16, Value) {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let import_ok = |id: &str| {
            etl && claims["access"] == "import" && claims["id"].as_str().is_none_or(|i| i == id)
        };
        match (method, parts.as_slice()) {
            ("GET", ["api", "import"]) => {
                if !(etl && claims["access"] == "import") {
                    return err(403, "Insufficient Access");
                }
                let limit: usize = query_of(query, "limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(10);
                let status = query_of(query, "status");
                let s = self.state.0.lock().unwrap();
                let mut items: Vec<&Value> = s
                    .imports
                    .values()
                    .filter(|i| status.as_deref().is_none_or(|st| i["status"] == st))
                    .collect();
                items.sort_by_key(|i| i["created"].as_str().unwrap_or("").to_owned());
                let total = items.len();
                items.truncate(limit.min(100));
                reply(200, json!({"total": total, "items": items}))
            }
            ("GET", ["api", "import", id]) => {
                let s = self.state.0.lock().unwrap();
                match s.imports.get(*id) {
                    None => err(404, "Item Not Found"),
                    Some(_) if !import_ok(id) => err(403, "Insufficient Access"),
                    Some(i) => reply(200, i.clone()),
                }
            }
            ("PATCH", ["api", "import", id]) => {
                if !import_ok(id) {
                    return err(403, "Insufficient Access");
                }
                let mut s = self.state.0.lock().unwrap();
                let Some(imp) = s.imports.get_mut(*id) else {
                    return err(404, "Item Not Found");
                };
                let status = body["status"].as_str();
                if matches!(status, Some("Empty" | "Pending")) {
                    return err(400, &format!("Cannot set status to {}", status.unwrap()));
                }
                if status == Some("Running") && imp["status"] == "Running" {
                    return err(
                        400,
                        "Cannot set status to running on an import that is already running",
                    );
                }
                if let Some(st) = status {
                    imp["status"] = json!(st);
                }
                if let Some(e) = body.get("error") {
                    imp["error"] = e.clone();
                }
                imp["updated"] = json!(now_iso(0));
                reply(200, imp.clone())
            }
            ("POST", ["api", "import", id, "result"]) => {
                let mut s = self.state.0.lock().unwrap();
                let Some(imp) = s.imports.get_mut(*id) else {
                    return err(404, "Item Not Found");
                };
                if Self::user(claims).as_deref() != imp["username"].as_str() && !import_ok(id) {
                    return err(400, "You did not create this import");
                }
                let (Some(name), Some(kind), Some(type_id)) = (
                    body["name"].as_str(),
                    body["type"].as_str(),
                    body["type_id"].as_str(),
                ) else {
                    return err(400, "Validation Error POST /api/import/:import/result");
                };
                if !matches!(kind, "Feature" | "Asset" | "Iconset" | "Basemap") {
                    return err(400, "Validation Error POST /api/import/:import/result");
                }
                let results = imp["results"].as_array_mut().unwrap();
                let r = json!({"id": results.len() + 1, "import": id, "name": name, "type": kind, "type_id": type_id});
                results.push(r.clone());
                reply(200, r)
            }
            ("POST", ["api", "profile", "asset"]) => {
                let Some(user) = Self::user(claims) else {
                    return err(403, "Insufficient Access");
                };
                let (Some(id), Some(name)) = (body["id"].as_str(), body["name"].as_str()) else {
                    return err(400, "Validation Error POST /api/profile/asset");
                };
                let ext = std::path::Path::new(name)
                    .extension()
                    .map(|e| format!(".{}", e.to_string_lossy().to_ascii_lowercase()))
                    .unwrap_or_default();
                let Some(size) = self.head(&format!("profile/{user}/{id}{ext}")).await else {
                    return err(404, "File not found in S3");
                };
                let mut s = self.state.0.lock().unwrap();
                if s.assets.contains_key(id) {
                    return err(
                        400,
                        "duplicate key value violates unique constraint \"profile_files_pkey\"",
                    );
                }
                let a = json!({"id": id, "username": user, "name": name,
                               "path": body.get("path").cloned().unwrap_or(json!("/")),
                               "size": size, "iconset": null, "artifacts": []});
                s.assets.insert(id.to_owned(), a.clone());
                reply(200, a)
            }
            ("PATCH", ["api", "profile", "asset", id]) => {
                let Some(user) = Self::user(claims) else {
                    return err(403, "Insufficient Access");
                };
                let exists = {
                    let s = self.state.0.lock().unwrap();
                    s.assets.get(*id).map(|a| a["username"] == user.as_str())
                };
                match exists {
                    None => return err(404, "Item Not Found"),
                    Some(false) => return err(403, "You do not own this asset"),
                    Some(true) => {}
                }
                let mut sized = Vec::new();
                if let Some(list) = body.get("artifacts").and_then(Value::as_array) {
                    for a in list {
                        let ext = a["ext"].as_str().unwrap_or("");
                        let Some(size) = self.head(&format!("profile/{user}/{id}{ext}")).await
                        else {
                            return err(404, "Artifact not found in S3");
                        };
                        sized.push(json!({"ext": ext, "size": size}));
                    }
                }
                let mut s = self.state.0.lock().unwrap();
                let a = s.assets.get_mut(*id).unwrap();
                if body.get("artifacts").is_some() {
                    a["artifacts"] = Value::Array(sized);
                }
                for k in ["path", "name", "iconset"] {
                    if let Some(v) = body.get(k) {
                        a[k] = v.clone();
                    }
                }
                reply(200, a.clone())
            }
            ("PUT", ["api", "profile", "feature"]) => {
                let Some(user) = Self::user(claims) else {
                    return err(403, "Insufficient Access");
                };
                let p = &body["properties"];
                let valid = body["id"].is_string()
                    && body["type"] == "Feature"
                    && ["how", "time", "start", "stale"]
                        .iter()
                        .all(|k| p[*k].is_string())
                    && p["center"]
                        .as_array()
                        .is_some_and(|c| (2..=3).contains(&c.len()))
                    && matches!(
                        body["geometry"]["type"].as_str(),
                        Some("Point" | "LineString" | "Polygon")
                    );
                if !valid {
                    return err(400, "Validation Error PUT /api/profile/feature");
                }
                let mut f = body.clone();
                f["properties"]["archived"] = json!(true);
                let id = f["id"].as_str().unwrap().to_owned();
                let mut s = self.state.0.lock().unwrap();
                s.features.insert((user, id), f.clone());
                reply(200, f)
            }
            ("GET", ["api", "iconset", uid]) => {
                let s = self.state.0.lock().unwrap();
                match s.iconsets.get(*uid) {
                    Some(i) => reply(200, i.clone()),
                    None => err(404, "Item Not Found"),
                }
            }
            ("POST", ["api", "iconset"]) => {
                let Some(user) = Self::user(claims) else {
                    return err(403, "Insufficient Access");
                };
                let (Some(uid), Some(name)) = (body["uid"].as_str(), body["name"].as_str()) else {
                    return err(400, "Validation Error POST /api/iconset");
                };
                if !body["version"].is_i64() || name.is_empty() || name.chars().count() > 64 {
                    return err(400, "Validation Error POST /api/iconset");
                }
                let mut s = self.state.0.lock().unwrap();
                if s.iconsets.contains_key(uid) {
                    return err(
                        400,
                        "duplicate key value violates unique constraint \"iconsets_pkey\"",
                    );
                }
                let mut i = body.clone();
                i["username"] = json!(user);
                s.iconsets.insert(uid.to_owned(), i.clone());
                reply(200, i)
            }
            ("POST", ["api", "iconset", uid, "icon"]) => {
                let name = body["name"].as_str().unwrap_or("");
                let data = body["data"].as_str().unwrap_or("");
                let mut s = self.state.0.lock().unwrap();
                match s.iconsets.get(*uid) {
                    None => return err(404, "Item Not Found"),
                    Some(i) if i["username"].as_str() != Self::user(claims).as_deref() => {
                        return err(400, "You don't have permission to modify this iconset");
                    }
                    Some(_) => {}
                }
                if name.is_empty() || name.chars().count() > 64 {
                    return err(400, "Validation Error POST /api/iconset/:iconset/icon");
                }
                if !(name.ends_with(".png") || name.ends_with(".svg"))
                    || !(data.starts_with("data:image/png;base64,")
                        || data.starts_with("data:image/svg+xml;base64,"))
                {
                    return err(500, "Internal Server Error");
                }
                let icon = json!({"iconset": uid, "name": name, "type2525b": body["type2525b"], "data": data});
                s.icons.push(icon.clone());
                reply(200, icon)
            }
            ("POST", ["api", "iconset", uid, "regen"]) => {
                let s = self.state.0.lock().unwrap();
                match s.iconsets.get(*uid) {
                    None => return err(404, "Item Not Found"),
                    Some(i) if i["username"].as_str() != Self::user(claims).as_deref() => {
                        return err(400, "You don't have permission to modify this iconset");
                    }
                    Some(_) => {}
                }
                reply(
                    200,
                    json!({"status": 200, "message": "Iconset Regenerated"}),
                )
            }
            ("POST", ["api", "basemap"]) => {
                if Self::user(claims).is_none() {
                    return err(403, "Insufficient Access");
                }
                let name = body["name"].as_str().unwrap_or("");
                let url = body["url"].as_str().unwrap_or("");
                let format_ok = body
                    .get("format")
                    .is_none_or(|f| matches!(f.as_str(), Some("png" | "webp" | "jpeg" | "mvt")));
                let url_ok = url.starts_with("http")
                    && ((url.contains("{z}") || url.contains("{$z}")) || url.contains("{q}"));
                if name.is_empty()
                    || name.chars().count() > 64
                    || body["protocol"] != "zxy"
                    || !format_ok
                    || !url_ok
                {
                    return err(400, "Validation Error POST /api/basemap");
                }
                let mut s = self.state.0.lock().unwrap();
                let mut b = body.clone();
                b["id"] = json!(s.basemaps.len() + 1);
                s.basemaps.push(b.clone());
                reply(200, b)
            }
            _ => err(404, &format!("No route {method} {path}")),
        }
    }
}
