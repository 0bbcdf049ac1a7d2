//! Keeps `openapi.yaml` honest: the OpenAPI description at the root of the
//! repository must describe exactly the routes the HTTP router serves
//! (`settle_gateway::http::ROUTES`), no more and no fewer, and must hang
//! together as a document:
//!
//! - every (method, path template) under `paths` is a route, and every route
//!   is under `paths`;
//! - every operation has a unique `operationId` and a non-empty `responses`;
//! - every `$ref` anywhere points at an existing `#/components/...` entry;
//! - every `{param}` of a path template is declared as a path parameter;
//! - every POST and PUT under `/v1/` (except `/v1/admin/`) requires the
//!   `X-IDEMPOTENCY-KEY` header, and the security requirements follow the
//!   contract (no key for `/healthz` and `/metrics`, the admin key for
//!   `/v1/admin/`, a client key elsewhere);
//! - the `Error` schema's `code` enum lists every error code of the API
//!   contract (hard-coded below, so this runs on a clone without `../shared`).
//!
//! When a route is added to or removed from the router, this test fails until
//! the spec follows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// The HTTP methods an OpenAPI path item can hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Every error code of the API contract (`shared/API.md`).
const CONTRACT_ERROR_CODES: [&str; 19] = [
    "unauthorized",
    "forbidden",
    "not_found",
    "idempotency_key_required",
    "idempotency_key_reused",
    "idempotency_conflict",
    "payload_too_large",
    "invalid_amount",
    "unknown_asset",
    "invalid_request",
    "invalid_query",
    "method_not_allowed",
    "insufficient_funds",
    "invalid_state",
    "wallet_restricted",
    "wallet_suspended",
    "wallet_closed",
    "queue_full",
    "unavailable",
];

/// The spec, parsed into JSON values (what an OpenAPI tool sees).
fn spec() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

/// One operation of the spec.
struct Operation<'a> {
    /// Uppercase, as in `ROUTES`.
    method: String,
    path: &'a str,
    path_item: &'a Value,
    op: &'a Value,
}

impl Operation<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn operations(spec: &Value) -> Vec<Operation<'_>> {
    let paths = spec
        .get("paths")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("openapi.yaml has no `paths` map"));
    let mut out = Vec::new();
    for (path, path_item) in paths {
        let item = path_item
            .as_object()
            .unwrap_or_else(|| panic!("paths.{path} is not a map"));
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push(Operation {
                    method: method.to_ascii_uppercase(),
                    path,
                    path_item,
                    op,
                });
            }
        }
    }
    out
}

/// Follows a local `$ref` (`#/...`), if `value` is one.
fn deref<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| spec.pointer(pointer))
            .unwrap_or_else(|| panic!("unresolvable $ref {reference}")),
        None => value,
    }
}

/// The parameters in force for an operation: the path item's, overridden by
/// the operation's own (same `name` and `in`).
fn parameters<'a>(spec: &'a Value, op: &Operation<'a>) -> Vec<&'a Value> {
    let mut by_key: BTreeMap<(String, String), &'a Value> = BTreeMap::new();
    for list in [op.path_item.get("parameters"), op.op.get("parameters")]
        .into_iter()
        .flatten()
    {
        let list = list
            .as_array()
            .unwrap_or_else(|| panic!("{}: `parameters` is not a list", op.label()));
        for param in list {
            let param = deref(spec, param);
            let field = |name: &str| {
                param
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{}: a parameter has no `{name}`", op.label()))
                    .to_owned()
            };
            let key = (field("in"), field("name").to_ascii_lowercase());
            by_key.insert(key, param);
        }
    }
    by_key.into_values().collect()
}

#[test]
fn spec_is_openapi_3_1() {
    let spec = spec();
    let version = spec.get("openapi").and_then(Value::as_str).unwrap_or("");
    assert!(
        version.starts_with("3.1."),
        "openapi.yaml must be OpenAPI 3.1.x, found {version:?}"
    );
}

#[test]
fn paths_match_the_router() {
    let spec = spec();
    let documented: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .map(|op| (op.method, op.path.to_owned()))
        .collect();
    let served: BTreeSet<(String, String)> = settle_gateway::http::ROUTES
        .iter()
        .map(|&(method, path)| (method.to_owned(), path.to_owned()))
        .collect();

    let show = |set: Vec<&(String, String)>| {
        set.iter()
            .map(|(method, path)| format!("\n  {method} {path}"))
            .collect::<String>()
    };
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "openapi.yaml and the router disagree.\nServed by the router, missing from openapi.yaml:{}\nIn openapi.yaml, not served by the router:{}",
        show(undocumented),
        show(unserved),
    );
}

#[test]
fn every_operation_has_a_unique_id_and_responses() {
    let spec = spec();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for op in operations(&spec) {
        match op.op.get("operationId").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => {
                if let Some(first) = seen.insert(id.to_owned(), op.label()) {
                    problems.push(format!(
                        "operationId {id:?} used by both {first} and {}",
                        op.label()
                    ));
                }
            }
            _ => problems.push(format!("{} has no operationId", op.label())),
        }
        match op.op.get("responses").and_then(Value::as_object) {
            Some(responses) if !responses.is_empty() => {}
            _ => problems.push(format!("{} has no responses map", op.label())),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_ref_resolves_into_components() {
    fn walk(spec: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let here = format!("{at}/{key}");
                    if key == "$ref" {
                        match child.as_str() {
                            Some(reference) => {
                                let target = if reference.starts_with("#/components/") {
                                    reference
                                        .strip_prefix('#')
                                        .and_then(|pointer| spec.pointer(pointer))
                                } else {
                                    None
                                };
                                if target.is_none() {
                                    problems.push(format!(
                                        "{here}: {reference:?} is not an existing #/components/... entry"
                                    ));
                                }
                            }
                            None => problems.push(format!("{here}: $ref is not a string")),
                        }
                    } else {
                        walk(spec, child, &here, problems);
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(spec, child, &format!("{at}/{i}"), problems);
                }
            }
            _ => {}
        }
    }

    let spec = spec();
    let mut problems = Vec::new();
    walk(&spec, &spec, "#", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn path_parameters_are_declared() {
    let spec = spec();
    let mut problems = Vec::new();
    for op in operations(&spec) {
        let templated: BTreeSet<&str> = op
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = parameters(&spec, &op)
            .into_iter()
            .filter(|p| p.get("in").and_then(Value::as_str) == Some("path"))
            .filter_map(|p| {
                if p.get("required").and_then(Value::as_bool) != Some(true) {
                    problems.push(format!("{}: path parameters must be required", op.label()));
                }
                p.get("name").and_then(Value::as_str)
            })
            .collect();
        if templated != declared {
            problems.push(format!(
                "{}: template parameters {templated:?}, declared path parameters {declared:?}",
                op.label()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn mutations_under_v1_require_an_idempotency_key() {
    let spec = spec();
    let mut problems = Vec::new();
    for op in operations(&spec) {
        let mutation = op.method == "POST" || op.method == "PUT";
        if !mutation || !op.path.starts_with("/v1/") || op.path.starts_with("/v1/admin/") {
            continue;
        }
        let required = parameters(&spec, &op).into_iter().any(|p| {
            p.get("in").and_then(Value::as_str) == Some("header")
                && p.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| name.eq_ignore_ascii_case("X-IDEMPOTENCY-KEY"))
                && p.get("required").and_then(Value::as_bool) == Some(true)
        });
        if !required {
            problems.push(format!(
                "{} does not require the X-IDEMPOTENCY-KEY header",
                op.label()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn security_follows_the_contract() {
    /// The schemes an operation accepts (the union of its alternatives).
    fn schemes(requirements: &Value) -> BTreeSet<String> {
        requirements
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|alternative| alternative.keys().cloned())
            .collect()
    }

    let spec = spec();
    let declared = spec
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("openapi.yaml has no components.securitySchemes"));
    let api_key_header = |scheme: &str| {
        declared.get(scheme).is_some_and(|s| {
            s.get("type").and_then(Value::as_str) == Some("apiKey")
                && s.get("in").and_then(Value::as_str) == Some("header")
                && s.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| name.eq_ignore_ascii_case("X-API-KEY"))
        })
    };
    let global = spec.get("security").cloned().unwrap_or(Value::Null);

    let mut problems = Vec::new();
    for op in operations(&spec) {
        let in_force = schemes(op.op.get("security").unwrap_or(&global));
        let open = op.path == "/healthz" || op.path == "/metrics";
        if open {
            if !in_force.is_empty() {
                problems.push(format!("{} must need no key", op.label()));
            }
            continue;
        }
        if in_force.is_empty() {
            problems.push(format!("{} must need X-API-KEY", op.label()));
        }
        for scheme in &in_force {
            if !api_key_header(scheme) {
                problems.push(format!(
                    "{}: scheme {scheme:?} is not an apiKey in header X-API-KEY",
                    op.label()
                ));
            }
        }
        let admin_scheme = in_force
            .iter()
            .any(|s| s.to_ascii_lowercase().contains("admin"));
        if op.path.starts_with("/v1/admin/") != admin_scheme {
            problems.push(format!(
                "{}: the admin key is needed on /v1/admin/ and only there (schemes {in_force:?})",
                op.label()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn error_enum_lists_every_contract_code() {
    let spec = spec();
    let codes: BTreeSet<&str> = spec
        .pointer("/components/schemas/Error/properties/code/enum")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("components.schemas.Error.properties.code has no enum"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let missing: Vec<&str> = CONTRACT_ERROR_CODES
        .into_iter()
        .filter(|code| !codes.contains(code))
        .collect();
    assert!(
        missing.is_empty(),
        "the Error code enum lacks contract codes: {missing:?}"
    );
}
