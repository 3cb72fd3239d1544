//! The HTTP face of the store: one handler that routes a request to
//! discovery or to a resource verb and answers in the API server's JSON.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::discovery;
use super::error::{K8sError, Result};
use super::list::ListParams;
use super::openapi;
use super::patch::PatchKind;
use super::protobuf;
use super::route::{self, Route, Target};
use super::scale;
use super::store::{Part, Store};
use super::table;
use super::watch::{EventType, WatchEvent};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Requests bigger than this are refused (the real server's limit is ~3 MiB).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// A watch without `timeoutSeconds` is closed after this long, as the real
/// server closes watches after a randomised 30–60 minutes.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Shared by every connection of one server.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub store: Store,
    pub shutdown: CancellationToken,
    pub server_address: String,
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let bytes = Bytes::from(body.to_string());
    let mut resp = Response::new(Full::new(bytes).boxed_unsync());
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn ok(body: &Value) -> Response<Body> {
    json_response(StatusCode::OK, body)
}

fn error_response(err: &K8sError) -> Response<Body> {
    let code = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &err.to_status())
}

/// Entry point for every request.
pub(crate) async fn handle(ctx: Ctx, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match route_request(&ctx, req).await {
        Ok(resp) => resp,
        Err(err) => {
            tracing::debug!(%method, %path, error = %err, "kubernetes API request failed");
            error_response(&err)
        }
    };
    Ok(resp)
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn list_params(&self) -> Result<ListParams> {
        let limit = match self.get("limit") {
            Some(l) => Some(
                l.parse::<usize>()
                    .map_err(|_| K8sError::BadRequest(format!("invalid limit \"{l}\"")))?,
            ),
            None => None,
        };
        Ok(ListParams {
            label_selector: self.get("labelSelector").map(str::to_string),
            field_selector: self.get("fieldSelector").map(str::to_string),
            limit,
            continue_token: self.get("continue").map(str::to_string),
        })
    }
}

async fn route_request(ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>> {
    let route = route::parse(req.uri().path());
    let query = Query::parse(req.uri().query());
    let types = || ctx.store.resource_types();
    match route {
        Route::Version => Ok(ok(&discovery::version())),
        Route::Healthz => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")).boxed_unsync());
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(resp)
        }
        Route::CoreVersions => Ok(ok(&discovery::core_versions(&ctx.server_address))),
        Route::Groups => Ok(ok(&discovery::group_list(&types()))),
        Route::Group(g) => discovery::group(&types(), &g)
            .map(|d| ok(&d))
            .ok_or_else(|| K8sError::UnknownResource(format!("group {g}"))),
        Route::ResourceList { group, version } => {
            discovery::resource_list(&types(), &group, &version)
                .map(|d| ok(&d))
                .ok_or_else(|| {
                    K8sError::UnknownResource(super::resource::api_version(&group, &version))
                })
        }
        Route::OpenApiV2 => {
            let mut resp =
                Response::new(Full::new(Bytes::from(openapi::v2_document())).boxed_unsync());
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(openapi::V2_CONTENT_TYPE),
            );
            Ok(resp)
        }
        Route::OpenApiV3 => {
            let crds = crd_objects(&ctx.store).await?;
            let path = req.uri().path().trim_end_matches('/');
            match path.strip_prefix("/openapi/v3").unwrap_or_default() {
                "" => Ok(ok(&openapi::v3_root(&types(), &crds))),
                gv => openapi::v3_document(&types(), &crds, gv)
                    .map(|doc| ok(&doc))
                    .ok_or_else(|| K8sError::UnknownResource(path.to_string())),
            }
        }
        Route::Resource(target) => resource(ctx, req, target, &query).await,
        Route::NotFound => Err(K8sError::UnknownResource(req.uri().path().to_string())),
    }
}

/// The registered CRD objects by name (their schemas feed OpenAPI v3).
async fn crd_objects(store: &Store) -> Result<std::collections::BTreeMap<String, Value>> {
    let gvr = super::resource::Gvr::new("apiextensions.k8s.io", "v1", "customresourcedefinitions");
    Ok(store
        .list(&gvr, None, None)
        .await?
        .into_iter()
        .filter_map(|crd| Some((super::object::name(&crd)?.to_string(), crd)))
        .collect())
}

async fn read_body(req: Request<Incoming>) -> Result<(String, Bytes)> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| K8sError::BadRequest(format!("reading the request body: {e}")))?
        .to_bytes();
    Ok((content_type, body))
}

/// Decodes a create/update body: JSON, YAML when the client says so, or
/// Kubernetes protobuf (what client-go's typed clients send by default).
fn decode_object(content_type: &str, body: &[u8]) -> Result<Value> {
    if protobuf::is_protobuf(content_type) {
        Ok(protobuf::decode(body)?)
    } else if content_type.contains("yaml") {
        serde_yaml_ng::from_slice(body)
            .map_err(|e| K8sError::BadRequest(format!("the body is not valid YAML: {e}")))
    } else if content_type.contains("json") || content_type.is_empty() {
        serde_json::from_slice(body)
            .map_err(|e| K8sError::BadRequest(format!("the body is not valid JSON: {e}")))
    } else {
        Err(K8sError::UnsupportedMediaType(format!(
            "application/json, application/yaml, {}",
            protobuf::MEDIA_TYPE
        )))
    }
}

/// The DeleteOptions of a DELETE: none, JSON, or protobuf.
fn delete_options(content_type: &str, body: &[u8]) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    decode_object(content_type, body)
}

/// `dryRun` as the real server takes it: absent or empty for a real write,
/// `All` for a dry run, anything else refused.
fn dry_run_values<'a>(values: impl Iterator<Item = &'a str>) -> Result<bool> {
    let mut dry = false;
    for v in values {
        match v {
            "" => {}
            "All" => dry = true,
            other => {
                return Err(K8sError::BadRequest(format!(
                    "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
                )));
            }
        }
    }
    Ok(dry)
}

async fn resource(
    ctx: &Ctx,
    req: Request<Incoming>,
    t: Target,
    query: &Query,
) -> Result<Response<Body>> {
    let dry_run = dry_run_values(
        query
            .0
            .iter()
            .filter(|(k, _)| k == "dryRun")
            .map(|(_, v)| v.as_str()),
    )?;
    // A dry run goes through every check of the write against a throwaway
    // copy of the store, so nothing is written and no watcher sees it.
    let store = if dry_run && req.method() != Method::GET {
        ctx.store.dry_run()
    } else {
        ctx.store.clone()
    };
    let store = &store;
    let rt = store.resource_type(&t.gvr)?;
    if t.namespace.is_some() && !rt.namespaced {
        return Err(K8sError::UnknownResource(format!(
            "{} is not namespaced",
            rt.plural
        )));
    }
    let ns = t.namespace.as_deref();
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let method = req.method().clone();
    match (method, t.name.as_deref(), t.subresource.as_deref()) {
        (Method::GET, None, None) if query.flag("watch") => {
            watch(ctx, &t, query, table::wants_table(&accept)).await
        }
        (Method::GET, None, None) => {
            let list = store.list_with(&t.gvr, ns, &query.list_params()?).await?;
            if table::wants_table(&accept) {
                return Ok(ok(&table::table(&rt, &list.items, &list.resource_version)));
            }
            let mut metadata = json!({"resourceVersion": list.resource_version});
            if let Some(c) = &list.continue_token {
                metadata["continue"] = json!(c);
            }
            if let Some(n) = list.remaining_item_count {
                metadata["remainingItemCount"] = json!(n);
            }
            Ok(ok(&json!({
                "apiVersion": t.gvr.api_version(),
                "kind": rt.list_kind,
                "metadata": metadata,
                "items": list.items,
            })))
        }
        (Method::POST, None, None) => {
            let (ct, body) = read_body(req).await?;
            let obj = decode_object(&ct, &body)?;
            let created = store.create(&t.gvr, ns, obj).await?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::DELETE, None, None) => {
            let deleted = store
                .delete_collection(&t.gvr, ns, &query.list_params()?)
                .await?;
            Ok(ok(&json!({
                "apiVersion": t.gvr.api_version(),
                "kind": rt.list_kind,
                "metadata": {"resourceVersion": store.resource_version().to_string()},
                "items": deleted,
            })))
        }
        (Method::GET, Some(name), None | Some("status")) => {
            let obj = store.get(&t.gvr, ns, name).await?;
            if table::wants_table(&accept) {
                let rv = store.resource_version().to_string();
                return Ok(ok(&table::table(&rt, &[obj], &rv)));
            }
            Ok(ok(&obj))
        }
        (Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            let (ct, body) = read_body(req).await?;
            let obj = decode_object(&ct, &body)?;
            if super::object::name(&obj) != Some(name) {
                return Err(K8sError::BadRequest(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    super::object::name(&obj).unwrap_or_default()
                )));
            }
            let part = if sub.is_some() {
                Part::Status
            } else {
                Part::Main
            };
            Ok(ok(&store.replace(&t.gvr, ns, obj, part).await?))
        }
        (Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let (ct, body) = read_body(req).await?;
            let kind = PatchKind::from_content_type(&ct)?;
            let patch = kind.parse_body(&body)?;
            let part = if sub.is_some() {
                Part::Status
            } else {
                Part::Main
            };
            Ok(ok(&store
                .patch(&t.gvr, ns, name, kind, &patch, part)
                .await?))
        }
        (Method::DELETE, Some(name), None) => {
            let (ct, body) = read_body(req).await?;
            // DeleteOptions may carry a resourceVersion precondition and,
            // from typed clients, the dry run instead of the query.
            let options = delete_options(&ct, &body)?;
            let precondition = options
                .get("preconditions")
                .and_then(|p| p.get("resourceVersion"))
                .and_then(Value::as_str);
            let in_body = options.get("dryRun").and_then(Value::as_array);
            let store = if !dry_run
                && dry_run_values(in_body.into_iter().flatten().filter_map(Value::as_str))?
            {
                &ctx.store.dry_run()
            } else {
                store
            };
            Ok(ok(&store
                .delete_checked(&t.gvr, ns, name, precondition)
                .await?))
        }
        (method, Some(name), Some("scale")) => scale_request(store, req, &t, name, method).await,
        (method, _, sub) => Err(K8sError::MethodNotAllowed(format!(
            "{method} on {}{}",
            rt.plural,
            sub.map(|s| format!("/{s}")).unwrap_or_default()
        ))),
    }
}

async fn scale_request(
    store: &Store,
    req: Request<Incoming>,
    t: &Target,
    name: &str,
    method: Method,
) -> Result<Response<Body>> {
    let rt = store.resource_type(&t.gvr)?;
    let ns = t.namespace.as_deref();
    let current = store.get(&t.gvr, ns, name).await?;
    let current_scale = scale::scale_of(&rt, &current)?;
    let wanted = match method {
        Method::GET => return Ok(ok(&current_scale)),
        Method::PUT => {
            let (ct, body) = read_body(req).await?;
            decode_object(&ct, &body)?
        }
        Method::PATCH => {
            let (ct, body) = read_body(req).await?;
            let kind = PatchKind::from_content_type(&ct)?;
            let patch = kind.parse_body(&body)?;
            super::patch::apply(kind, &current_scale, &patch)?
        }
        other => {
            return Err(K8sError::MethodNotAllowed(format!(
                "{other} on {}/scale",
                rt.plural
            )));
        }
    };
    let patch = scale::object_patch(&rt, &wanted)?;
    let updated = store
        .patch(&t.gvr, ns, name, PatchKind::Merge, &patch, Part::Main)
        .await?;
    Ok(ok(&scale::scale_of(&rt, &updated)?))
}

/// A bookmark event carrying only a resourceVersion (and annotations).
fn bookmark(api_version: &str, kind: &str, rv: u64, initial_end: bool) -> WatchEvent {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    WatchEvent {
        event_type: EventType::Bookmark,
        object: json!({"apiVersion": api_version, "kind": kind, "metadata": metadata}),
    }
}

async fn watch(ctx: &Ctx, t: &Target, query: &Query, as_table: bool) -> Result<Response<Body>> {
    let store = &ctx.store;
    let rt = store.resource_type(&t.gvr)?;
    let params = query.list_params()?;
    let send_initial = query.flag("sendInitialEvents");
    let from = if send_initial {
        None
    } else {
        query.get("resourceVersion")
    };
    let mut stream = match store
        .watch_with(&t.gvr, t.namespace.as_deref(), from, &params)
        .await
    {
        Ok(s) => s,
        // A watch from a compacted resourceVersion answers 200 with one
        // ERROR event carrying 410, as the real server does.
        Err(err @ K8sError::Gone { .. }) => {
            let event = WatchEvent {
                event_type: EventType::Error,
                object: err.to_status(),
            };
            let line = format!("{}\n", event.to_json());
            return Ok(stream_response(
                futures::stream::iter([Bytes::from(line)]).boxed(),
            ));
        }
        Err(err) => return Err(err),
    };
    if send_initial && query.flag("allowWatchBookmarks") {
        let rv = store.resource_version();
        stream
            .backlog
            .push_back(bookmark(&t.gvr.api_version(), &rt.kind, rv, true));
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let deadline = tokio::time::Instant::now() + timeout;
    let shutdown = ctx.shutdown.clone();
    // `kubectl get -w` asks for Tables: each event then carries a one-row Table.
    let table_type = rt.clone();
    let render = move |mut e: WatchEvent| {
        if as_table
            && matches!(
                e.event_type,
                EventType::Added | EventType::Modified | EventType::Deleted
            )
        {
            let rv = super::object::resource_version(&e.object)
                .unwrap_or_default()
                .to_string();
            e.object = table::table(&table_type, std::slice::from_ref(&e.object), &rv);
        }
        Bytes::from(format!("{}\n", e.to_json()))
    };
    let events = futures::stream::unfold(stream, move |mut s| {
        let shutdown = shutdown.clone();
        let render = render.clone();
        async move {
            tokio::select! {
                event = s.next() => event.map(|e| (render(e), s)),
                _ = tokio::time::sleep_until(deadline) => None,
                _ = shutdown.cancelled() => None,
            }
        }
    });
    Ok(stream_response(events.boxed()))
}

fn stream_response(lines: futures::stream::BoxStream<'static, Bytes>) -> Response<Body> {
    let frames = lines.map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
