//! The web console (`gateway/console/`, its API in `gateway/console/API.md`): a page compiled
//! into the binary and a JSON API on the gateway's console listener (`console_listen_addr`).
//!
//! The console holds no rights of its own. A session is made by logging in with an access key
//! and its secret; every call resolves that key again (a disabled or deleted key ends the
//! session within the key cache's TTL) and every bucket or object call is authorized exactly as
//! the S3 request of the same operation would be ([`authz::authorize`]). Users and keys are
//! for administrators only. Changes need the `X-Dmpstore-Console` header besides the
//! SameSite=Strict cookie, so another site cannot make a browser send one.

use crate::authz::{self, Access};
use crate::error::GatewayError;
use crate::iam::Identity;
use crate::state::GatewayState;
use crate::{admin, buckets, get, lifecycle, list, put, versions};
use bytes::Bytes;
use dmpstore_common::lifecycle::LifecycleConfiguration;
use dmpstore_common::record::{BucketAccess, MetaValue, Versioning};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const STYLE_CSS: &str = include_str!("../console/style.css");

/// The session cookie's name and lifetime.
const COOKIE: &str = "dmpstore_console";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at most (each is a few hundred bytes).
const MAX_SESSIONS: usize = 10_000;
/// Largest JSON body a console call takes.
const MAX_JSON_BYTES: usize = 1 << 20;
/// One rate sample per interval, an hour of them.
const RATE_INTERVAL: Duration = Duration::from_secs(10);
const RATE_SAMPLES: usize = 360;
/// How long one cluster summary answers every tab that asks (it costs a call to every node).
const CLUSTER_CACHE: Duration = Duration::from_secs(1);
/// Objects per listing page and versions per versions view.
const PAGE_KEYS: usize = 1000;

type Body = s3s::Body;

/// The console's state: sessions, rate samples, the last cluster summary.
pub struct Console {
    state: Arc<GatewayState>,
    sessions: Mutex<HashMap<String, Session>>,
    rates: Mutex<VecDeque<RateSample>>,
    cluster: tokio::sync::Mutex<Option<(Instant, Value)>>,
    /// Whether the listener speaks TLS (the cookie is then `Secure`).
    tls: bool,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

struct Session {
    access_key: String,
    expires: Instant,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct RateSample {
    t_ms: u64,
    requests: u64,
    errors: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// An answer other than success: a status and S3's error code.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: &str) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> ApiError {
        let s3: s3s::S3Error = e.into();
        ApiError {
            status: s3
                .status_code()
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: s3.code().as_str().to_string(),
            message: s3.message().unwrap_or_default().to_string(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequest", &format!("{e:#}"))
    }
}

type Answer = Result<Response<Body>, ApiError>;

impl Console {
    pub fn new(state: Arc<GatewayState>, tls: bool) -> Console {
        Console {
            state,
            sessions: Mutex::default(),
            rates: Mutex::default(),
            cluster: tokio::sync::Mutex::default(),
            tls,
        }
    }

    /// Samples this gateway's request and byte counters every [`RATE_INTERVAL`] until
    /// `shutdown`, keeping an hour of per-interval differences for the charts.
    pub async fn sample_rates(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(RATE_INTERVAL);
        let mut last: Option<(u64, u64, u64, u64)> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let m = &self.state.metrics;
            let (requests, errors) = m.request_totals();
            let now = (requests, errors, m.bytes_in.get(), m.bytes_out.get());
            if let Some(prev) = last {
                let mut rates = self.rates.lock().expect("rates lock");
                if rates.len() == RATE_SAMPLES {
                    rates.pop_front();
                }
                rates.push_back(RateSample {
                    t_ms: GatewayState::now_ms(),
                    requests: now.0.saturating_sub(prev.0),
                    errors: now.1.saturating_sub(prev.1),
                    bytes_in: now.2.saturating_sub(prev.2),
                    bytes_out: now.3.saturating_sub(prev.3),
                });
            }
            last = Some(now);
        }
    }

    /// One request on the console listener.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let answer = match path.strip_prefix("/api/") {
            None => Ok(self.page(&path)),
            Some(api) => {
                let api = api.to_string();
                buckets::request_scope(self.api(req, &api)).await
            }
        };
        let mut r = answer.unwrap_or_else(|e| {
            if e.status.is_server_error() {
                tracing::warn!(code = %e.code, message = %e.message, "console call failed");
            }
            json_response(e.status, &json!({"error": e.code, "message": e.message}))
        });
        let h = r.headers_mut();
        h.insert(
            "content-security-policy",
            HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
        );
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        r
    }

    /// The page's three files; anything else is 404.
    fn page(&self, path: &str) -> Response<Body> {
        let (text, kind) = match path {
            "/" | "/index.html" => (INDEX_HTML, "text/html; charset=utf-8"),
            "/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
            "/style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
            _ => {
                let mut r = Response::new(Body::from("not found\n".to_string()));
                *r.status_mut() = StatusCode::NOT_FOUND;
                return r;
            }
        };
        let mut r = Response::new(Body::from(text.to_string()));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        r
    }

    /// The JSON API: login first, then every call as the session's key.
    async fn api(&self, req: Request<Body>, path: &str) -> Answer {
        let method = req.method().clone();
        if method != Method::GET
            && req
                .headers()
                .get("x-dmpstore-console")
                .map(|v| v.as_bytes())
                != Some(b"1")
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "console changes need the X-Dmpstore-Console header",
            ));
        }
        if (method.clone(), path) == (Method::POST, "login") {
            return self.login(req).await;
        }
        let token = session_token(&req);
        let who = self.identity(token.as_deref()).await?;
        let segments: Vec<String> = path
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query = query_of(&req);
        match (&method, parts.as_slice()) {
            (&Method::POST, ["logout"]) => Ok(self.logout(token.as_deref())),
            (&Method::GET, ["me"]) => Ok(ok(json!({"user": who.name(), "admin": who.is_admin()}))),
            (&Method::GET, ["cluster"]) => self.cluster().await,
            (&Method::GET, ["rates"]) => Ok(self.rates()),
            (_, ["buckets", ..]) => self.buckets_api(req, &who, &parts[1..], &query).await,
            (_, ["users", ..]) => self.users_api(req, &who, &parts[1..]).await,
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NoSuchResource",
                "no such console call",
            )),
        }
    }

    async fn login(&self, req: Request<Body>) -> Answer {
        #[derive(serde::Deserialize)]
        struct Login {
            access_key: String,
            secret_key: String,
        }
        let login: Login = json_body(req).await?;
        let entry = self
            .state
            .identities
            .resolve(&self.state, &login.access_key)
            .await?;
        let Some(entry) = entry.filter(|e| same_secret(&e.secret_key, &login.secret_key)) else {
            tracing::info!(access_key = %login.access_key, "console login refused");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAccessKeyId",
                "the access key or secret is wrong, or the key is disabled",
            ));
        };
        let token = hex::encode(rand::random::<[u8; 32]>());
        {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            if sessions.len() >= MAX_SESSIONS {
                let now = Instant::now();
                sessions.retain(|_, s| s.expires > now);
            }
            if sessions.len() >= MAX_SESSIONS {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SlowDown",
                    "too many console sessions; try again later",
                ));
            }
            sessions.insert(
                token.clone(),
                Session {
                    access_key: login.access_key.clone(),
                    expires: Instant::now() + SESSION_TTL,
                },
            );
        }
        let who = entry.identity;
        tracing::info!(user = who.name(), "console login");
        let mut r = ok(json!({"user": who.name(), "admin": who.is_admin()}));
        let secure = if self.tls { "; Secure" } else { "" };
        let cookie = format!(
            "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            SESSION_TTL.as_secs()
        );
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
        );
        Ok(r)
    }

    fn logout(&self, token: Option<&str>) -> Response<Body> {
        if let Some(t) = token {
            self.sessions.lock().expect("sessions lock").remove(t);
        }
        let mut r = ok(json!({}));
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&format!(
                "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
            ))
            .expect("cookie is ASCII"),
        );
        r
    }

    /// The identity of the session's key now (401 without a live session or usable key).
    async fn identity(&self, token: Option<&str>) -> Result<Identity, ApiError> {
        let unauthorized =
            || ApiError::new(StatusCode::UNAUTHORIZED, "AccessDenied", "log in first");
        let token = token.ok_or_else(unauthorized)?;
        let access_key = {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            match sessions.get(token) {
                Some(s) if s.expires > Instant::now() => s.access_key.clone(),
                Some(_) => {
                    sessions.remove(token);
                    return Err(unauthorized());
                }
                None => return Err(unauthorized()),
            }
        };
        match self
            .state
            .identities
            .resolve(&self.state, &access_key)
            .await?
        {
            Some(entry) => Ok(entry.identity),
            None => {
                self.sessions.lock().expect("sessions lock").remove(token);
                Err(unauthorized())
            }
        }
    }

    /// `gateway admin status --json` through this gateway's own clients, shared by every tab
    /// for [`CLUSTER_CACHE`].
    async fn cluster(&self) -> Answer {
        let mut cached = self.cluster.lock().await;
        if let Some((at, value)) = cached.as_ref() {
            if at.elapsed() < CLUSTER_CACHE {
                return Ok(ok(value.clone()));
            }
        }
        let summary =
            admin::status_of_gateway(&self.state, admin::DEFAULT_ANNUAL_FAILURE_RATE).await;
        let value = serde_json::to_value(&summary).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &e.to_string(),
            )
        })?;
        *cached = Some((Instant::now(), value.clone()));
        Ok(ok(value))
    }

    fn rates(&self) -> Response<Body> {
        let samples: Vec<RateSample> = self
            .rates
            .lock()
            .expect("rates lock")
            .iter()
            .copied()
            .collect();
        ok(json!({"interval_ms": RATE_INTERVAL.as_millis() as u64, "samples": samples}))
    }

    /// Whether `who` may do `op` on the bucket (and key): the S3 request's own decision.
    async fn allow(
        &self,
        who: &Identity,
        op: &str,
        bucket: &str,
        key: Option<&str>,
        version_id: Option<&str>,
    ) -> Result<(), ApiError> {
        let access = Access {
            op: op.to_string(),
            bucket: bucket.to_string(),
            key: key.map(str::to_string),
            version_id: version_id.map(str::to_string),
            prefix: None,
            context: Default::default(),
        };
        authz::authorize(&self.state, Some(who), &access).await?;
        Ok(())
    }
}

/// Buckets, objects, versions and lifecycle rules.
impl Console {
    async fn buckets_api(
        &self,
        req: Request<Body>,
        who: &Identity,
        parts: &[&str],
        query: &HashMap<String, String>,
    ) -> Answer {
        let method = req.method().clone();
        let state = &self.state;
        match (&method, parts) {
            (&Method::GET, []) => {
                let listed: Vec<Value> = buckets::list(state)
                    .await?
                    .into_iter()
                    .filter(|(name, b)| buckets::listed_for(who, name, b))
                    .map(|(name, b)| {
                        json!({"name": name, "created_ms": b.created_ms, "versioning": versioning_name(b.versioning)})
                    })
                    .collect();
                Ok(ok(json!({ "buckets": listed })))
            }
            (&Method::POST, []) => {
                #[derive(serde::Deserialize)]
                struct NewBucket {
                    name: String,
                }
                let b: NewBucket = json_body(req).await?;
                if !s3s::path::check_bucket_name(&b.name) {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidBucketName",
                        "bucket names are 3 to 63 of a-z, 0-9, '.' and '-', starting and ending with a letter or digit",
                    ));
                }
                self.allow(who, "CreateBucket", &b.name, None, None).await?;
                buckets::create(state, &b.name, BucketAccess::new_bucket(who.name())).await?;
                Ok(ok(json!({})))
            }
            (&Method::DELETE, [bucket]) => {
                self.allow(who, "DeleteBucket", bucket, None, None).await?;
                buckets::delete(state, bucket).await?;
                Ok(ok(json!({})))
            }
            (&Method::GET, [bucket, "objects"]) => self.list_objects(who, bucket, query).await,
            (&Method::GET, [bucket, "versions"]) => self.list_versions(who, bucket, query).await,
            (_, [bucket, "objects", key]) => self.object(req, who, bucket, key, query).await,
            (_, [bucket, "lifecycle"]) => self.lifecycle(req, who, bucket).await,
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NoSuchResource",
                "no such console call",
            )),
        }
    }

    async fn list_objects(
        &self,
        who: &Identity,
        bucket: &str,
        query: &HashMap<String, String>,
    ) -> Answer {
        self.allow(who, "ListObjectsV2", bucket, None, None).await?;
        let prefix = query.get("prefix").cloned().unwrap_or_default();
        let start_after = match query.get("token").filter(|t| !t.is_empty()) {
            Some(t) => hex::decode(t).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "the page token is not valid",
                )
            })?,
            None => Vec::new(),
        };
        let params = list::ListParams {
            prefix: prefix.clone(),
            delimiter: Some("/".into()),
            start_after,
            max_keys: PAGE_KEYS,
        };
        let listing = list::list(&self.state, bucket, &params).await?;
        let objects: Vec<Value> = listing
            .objects
            .iter()
            .map(|(key, r)| {
                json!({"key": key, "size": r.size_bytes, "last_modified_ms": r.last_modified_ms, "etag": format!("\"{}\"", r.etag)})
            })
            .collect();
        Ok(ok(json!({
            "prefix": prefix,
            "prefixes": listing.common_prefixes,
            "objects": objects,
            "next": listing.next_cursor.map(hex::encode),
        })))
    }

    async fn list_versions(
        &self,
        who: &Identity,
        bucket: &str,
        query: &HashMap<String, String>,
    ) -> Answer {
        self.allow(who, "ListObjectVersions", bucket, None, None)
            .await?;
        let params = versions::VersionListParams {
            prefix: query.get("prefix").cloned().unwrap_or_default(),
            delimiter: None,
            key_marker: None,
            version_id_marker: None,
            max_keys: PAGE_KEYS,
        };
        let listing = versions::list(&self.state, bucket, &params).await?;
        let listed: Vec<Value> = listing
            .versions
            .iter()
            .map(|v| {
                let (size, at, marker) = match &v.value {
                    MetaValue::Object(r) => (r.size_bytes, r.last_modified_ms, false),
                    MetaValue::DeleteMarker(m) => (0, m.deleted_ms, true),
                    _ => (0, 0, false),
                };
                json!({"key": v.key, "version_id": versions::shown(v.value.version_id()), "latest": v.is_latest, "delete_marker": marker, "size": size, "last_modified_ms": at})
            })
            .collect();
        Ok(ok(json!({ "versions": listed })))
    }

    /// Upload, download or delete one object.
    async fn object(
        &self,
        req: Request<Body>,
        who: &Identity,
        bucket: &str,
        key: &str,
        query: &HashMap<String, String>,
    ) -> Answer {
        if key.is_empty() || key.len() > 1024 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "KeyTooLongError",
                "object keys are 1 to 1024 bytes",
            ));
        }
        let version = query.get("version_id").map(String::as_str);
        match *req.method() {
            Method::GET => {
                self.allow(who, "GetObject", bucket, Some(key), version)
                    .await?;
                self.download(bucket, key, version).await
            }
            Method::PUT => {
                self.allow(who, "PutObject", bucket, Some(key), None)
                    .await?;
                self.upload(req, bucket, key).await
            }
            Method::DELETE => {
                self.allow(who, "DeleteObject", bucket, Some(key), version)
                    .await?;
                versions::delete(&self.state, bucket, key, version).await?;
                Ok(ok(json!({})))
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "GET, PUT or DELETE",
            )),
        }
    }

    async fn download(&self, bucket: &str, key: &str, version: Option<&str>) -> Answer {
        let (record, _) = get::head_version(&self.state, bucket, key, version).await?;
        let size = record.size_bytes;
        let body = get::body(&self.state, &record.data, size, 0..size, None);
        self.state.metrics.bytes_out.inc_by(size);
        let mut r = Response::new(Body::from(body));
        let h = r.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_DISPOSITION, attachment(key));
        Ok(r)
    }

    async fn upload(&self, req: Request<Body>, bucket: &str, key: &str) -> Answer {
        let content_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = s3s::dto::StreamingBlob::from(req.into_body());
        let stored = put::put_object(
            &self.state,
            put::PutRequest {
                bucket: bucket.to_string(),
                key: key.to_string(),
                body,
                content_length,
                content_md5: None,
                content_type,
                user_metadata: Vec::new(),
                conditions: Default::default(),
                checksum: None,
                tags: Vec::new(),
            },
        )
        .await?;
        Ok(ok(
            json!({"etag": format!("\"{}\"", stored.etag), "version_id": stored.version_id}),
        ))
    }

    async fn lifecycle(&self, req: Request<Body>, who: &Identity, bucket: &str) -> Answer {
        let state = &self.state;
        match *req.method() {
            Method::GET => {
                self.allow(who, "GetBucketLifecycleConfiguration", bucket, None, None)
                    .await?;
                let rules = lifecycle::get_rules(state, bucket).await?;
                Ok(ok(serde_json::to_value(rules).unwrap_or_default()))
            }
            Method::PUT => {
                self.allow(who, "PutBucketLifecycleConfiguration", bucket, None, None)
                    .await?;
                let rules: LifecycleConfiguration = json_body(req).await?;
                lifecycle::put_rules(state, bucket, rules).await?;
                Ok(ok(json!({})))
            }
            Method::DELETE => {
                self.allow(who, "DeleteBucketLifecycle", bucket, None, None)
                    .await?;
                lifecycle::delete_rules(state, bucket).await?;
                Ok(ok(json!({})))
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "GET, PUT or DELETE",
            )),
        }
    }
}

/// Users and keys, for administrators: the `gateway admin user|key` commands.
impl Console {
    async fn users_api(&self, req: Request<Body>, who: &Identity, parts: &[&str]) -> Answer {
        if !who.is_admin() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "users and keys are for administrators",
            ));
        }
        let config = &self.state.config;
        let method = req.method().clone();
        match (&method, parts) {
            (&Method::GET, []) => Ok(ok(json!({"users": admin::iam::list_users(config).await?}))),
            (&Method::POST, []) => {
                #[derive(serde::Deserialize)]
                struct NewUser {
                    name: String,
                }
                let u: NewUser = json_body(req).await?;
                Ok(ok(serde_json::to_value(
                    admin::iam::create_user(config, &u.name).await?,
                )
                .unwrap_or_default()))
            }
            (&Method::DELETE, [name]) => {
                admin::iam::delete_user(config, name)
                    .await
                    .map_err(conflict)?;
                Ok(ok(json!({})))
            }
            (&Method::GET, [name, "keys"]) => Ok(ok(
                json!({"keys": admin::iam::list_keys(config, name).await?}),
            )),
            (&Method::POST, [name, "keys"]) => {
                #[derive(serde::Deserialize)]
                struct NewKey {
                    #[serde(default)]
                    read_only: bool,
                    #[serde(default)]
                    prefixes: Vec<String>,
                }
                let k: NewKey = json_body(req).await?;
                let scope = dmpstore_common::record::KeyScope {
                    read_only: k.read_only,
                    prefixes: k.prefixes,
                };
                let key = admin::iam::create_key(config, name, scope, None).await?;
                Ok(ok(serde_json::to_value(key).unwrap_or_default()))
            }
            (&Method::POST, [name, "keys", ak, action @ ("disable" | "enable")]) => {
                admin::iam::set_key_disabled(config, name, ak, *action == "disable").await?;
                Ok(ok(json!({})))
            }
            (&Method::DELETE, [name, "keys", ak]) => {
                admin::iam::delete_key(config, name, ak).await?;
                Ok(ok(json!({})))
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NoSuchResource",
                "no such console call",
            )),
        }
    }
}

/// A refusal of the admin commands that means "not now" (a user who still owns buckets).
fn conflict(e: anyhow::Error) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "Conflict", &format!("{e:#}"))
}

fn versioning_name(v: Versioning) -> &'static str {
    match v {
        Versioning::Unversioned => "Unversioned",
        Versioning::Enabled => "Enabled",
        Versioning::Suspended => "Suspended",
    }
}

fn ok(value: Value) -> Response<Body> {
    json_response(StatusCode::OK, &value)
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The request's JSON body, at most [`MAX_JSON_BYTES`]; unknown or missing fields are 400.
async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Body>) -> Result<T, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_JSON_BYTES);
    let bytes: Bytes = limited
        .collect()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                &format!("reading the body: {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MalformedJSON",
            &format!("the body is not valid: {e}"),
        )
    })
}

fn session_token(req: &Request<Body>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
        .filter(|t| !t.is_empty())
}

fn query_of(req: &Request<Body>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `Content-Disposition` for a download named after the key's last segment: an ASCII
/// fallback and the exact name percent-encoded (RFC 6266).
fn attachment(key: &str) -> HeaderValue {
    let name = key.rsplit('/').next().unwrap_or(key);
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_named_safely_for_any_key() {
        let h = attachment("app/a b#c?d%e&ü \"q\".txt");
        let text = h.to_str().expect("ASCII header");
        assert!(
            text.starts_with("attachment; filename=\"a b_c_d_e__ _q_.txt\""),
            "{text}"
        );
        assert!(
            text.contains("filename*=UTF-8''a%20b%23c%3Fd%25e%26%C3%BC%20%22q%22%2Etxt"),
            "{text}"
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
