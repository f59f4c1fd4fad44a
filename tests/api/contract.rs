//! Holds the server to `openapi.yaml`: every response the integration tests
//! receive (through `TestApp::send`) must be documented for its route, method
//! and status, with a documented content type, and a JSON body that validates
//! against the documented schema. A small validator for the subset of JSON
//! Schema the spec uses; not a general one.

use std::sync::OnceLock;

use serde_json::Value;

pub struct Contract {
    spec: Value,
}

/// The spec, parsed once per test binary.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("read openapi.yaml");
        let spec: Value = serde_yaml::from_str(&text).expect("openapi.yaml is valid YAML");
        Contract { spec }
    })
}

impl Contract {
    /// Checks one exchange; `Err` says what the spec does not allow.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let Some((template, item)) = self.path_item(path) else {
            // The spec cannot list paths that do not exist; it documents their
            // answer once, as `404 not_found` with the error object.
            let error: Value = serde_json::from_slice(body).map_err(|e| {
                format!("{method} {path} (no such route) answered a non-JSON body: {e}")
            })?;
            if status != 404 || error["error"]["code"] != "not_found" {
                return Err(format!(
                    "{path} matches no path in openapi.yaml and answered {status} {error}"
                ));
            }
            let schema = serde_json::json!({ "$ref": "#/components/schemas/Error" });
            return self.validate(&schema, &error, "$", true);
        };
        let method = method.to_ascii_lowercase();
        let responses = match item.get(&method) {
            Some(operation) => &operation["responses"],
            None => {
                // Methods the spec does not list for a path are documented as a
                // 405 on its operations; any other answer is a contract breach.
                if status != 405 {
                    return Err(format!(
                        "{method} {template} is undocumented and answered {status}"
                    ));
                }
                let any = item
                    .as_object()
                    .and_then(|ops| ops.values().next())
                    .ok_or("empty path item")?;
                &any["responses"]
            }
        };
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .ok_or_else(|| format!("{method} {template}: status {status} is not documented"))?;
        let response = self.resolve(response);
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{method} {template} {status}: documented without a body, got {} bytes",
                    body.len()
                ))
            };
        };
        let media = content_type
            .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let documented = content
            .get(&media)
            .or_else(|| (media.starts_with("image/")).then(|| content.get("image/*")).flatten())
            .ok_or_else(|| {
                let known: Vec<&String> = content.keys().collect();
                format!("{method} {template} {status}: content type {media:?} not documented (documented: {known:?})")
            })?;
        if media != "application/json" {
            return Ok(());
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{method} {template} {status}: body is not JSON: {e}"))?;
        let schema = documented
            .get("schema")
            .ok_or("JSON response without a schema")?;
        self.validate(schema, &value, "$", true)
            .map_err(|e| format!("{method} {template} {status}: {e}\nbody: {value}"))
    }

    fn path_item(&self, path: &str) -> Option<(&str, &Value)> {
        let paths = self.spec["paths"].as_object()?;
        if let Some((template, item)) = paths.get_key_value(path) {
            return Some((template.as_str(), item));
        }
        let segments: Vec<&str> = path.split('/').collect();
        paths.iter().find_map(|(template, item)| {
            let parts: Vec<&str> = template.split('/').collect();
            let matches = parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(t, s)| {
                    (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                });
            matches.then_some((template.as_str(), item))
        })
    }

    fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let pointer = reference.trim_start_matches('#');
            node = self
                .spec
                .pointer(pointer)
                .unwrap_or_else(|| panic!("openapi.yaml: dangling $ref {reference}"));
        }
        node
    }

    /// `strict`: members not named by the schema are an error (the spec is
    /// behind the server). Parts of an `allOf` are checked leniently and the
    /// union of their members strictly.
    fn validate(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        strict: bool,
    ) -> Result<(), String> {
        let schema = self.resolve(schema);
        if value.is_null() {
            return if schema["nullable"] == true
                || schema.get("type").is_none()
                    && schema.get("$ref").is_none()
                    && schema.get("allOf").is_none()
            {
                Ok(())
            } else {
                Err(format!("{at} is null but not nullable"))
            };
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                self.validate(part, value, at, false)?;
            }
            if let (true, Some(object)) = (strict, value.as_object()) {
                let known: Vec<&String> = all
                    .iter()
                    .filter_map(|part| self.resolve(part).get("properties")?.as_object())
                    .flat_map(|properties| properties.keys())
                    .collect();
                if let Some(extra) = object.keys().find(|k| !known.contains(k)) {
                    return Err(format!("{at}.{extra} is not documented"));
                }
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                if !options
                    .iter()
                    .any(|o| self.validate(o, value, at, strict).is_ok())
                {
                    return Err(format!("{at} matches none of the {key} schemas: {value}"));
                }
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                return Err(format!("{at} = {value} is not one of {allowed:?}"));
            }
        }
        let ty = schema.get("type").and_then(Value::as_str);
        let type_ok = match ty {
            None => true,
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some(other) => return Err(format!("unsupported schema type {other} at {at}")),
        };
        if !type_ok {
            return Err(format!("{at} should be {}, got {value}", ty.unwrap_or("?")));
        }
        if let Some(object) = value.as_object() {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    return Err(format!("{at} lacks required member {name:?}"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, member) in object {
                let path = format!("{at}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(member_schema) => self.validate(member_schema, member, &path, true)?,
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            return Err(format!(
                                "{path} is not documented (additionalProperties: false)"
                            ))
                        }
                        Some(extra) if extra.is_object() => {
                            self.validate(extra, member, &path, true)?
                        }
                        // Undocumented members are allowed by JSON Schema, but
                        // here they mean the spec is behind the server.
                        _ if strict && properties.is_some() => {
                            return Err(format!("{path} is not documented"))
                        }
                        _ => {}
                    },
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                self.validate(items, item, &format!("{at}[{i}]"), true)?;
            }
        }
        Ok(())
    }
}

#[test]
fn the_validator_rejects_what_the_spec_does_not_allow() {
    let c = contract();
    let ok = br#"{"status":"ok"}"#;
    assert!(c
        .check("GET", "/healthz", 200, Some("application/json"), ok)
        .is_ok());
    assert!(c
        .check("GET", "/healthz", 418, Some("application/json"), ok)
        .is_err());
    assert!(c.check("GET", "/nowhere/at/all/x", 200, None, b"").is_err());
    let error = br#"{"error":{"code":"job_not_found","message":"m","file":null}}"#;
    assert!(c
        .check(
            "GET",
            "/status-job/abc",
            404,
            Some("application/json"),
            error
        )
        .is_ok());
    let bad_code = br#"{"error":{"code":"oops","message":"m","file":null}}"#;
    assert!(c
        .check(
            "GET",
            "/status-job/abc",
            404,
            Some("application/json"),
            bad_code
        )
        .is_err());
    let missing = br#"{"error":{"code":"job_not_found","file":null}}"#;
    assert!(c
        .check(
            "GET",
            "/status-job/abc",
            404,
            Some("application/json"),
            missing
        )
        .is_err());
    assert!(c
        .check("GET", "/status-job/abc", 404, Some("text/plain"), b"x")
        .is_err());
}
