//! Building an RPC's input message from an HTTP request (path variables,
//! query parameters, JSON or raw body) and rendering messages as proto3
//! canonical JSON.

use base64::Engine as _;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions,
};
use serde_json::{Map, Value};

use super::rules::{Binding, Body};
use crate::error::{AppError, FieldViolation};

/// The request parts the input message is made from.
pub struct Parts<'a> {
    /// Path variables: dotted field path and value.
    pub variables: Vec<(String, String)>,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The request's content type.
    pub content_type: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// Why a request could not become a message; each maps to an HTTP status.
#[derive(Debug)]
pub enum RequestError {
    /// 415: the body is not JSON (or raw bytes where raw bytes go).
    UnsupportedMediaType(String),
    /// 400 with field violations.
    Invalid(AppError),
}

impl From<AppError> for RequestError {
    fn from(error: AppError) -> Self {
        Self::Invalid(error)
    }
}

/// The input message of `binding`'s RPC for these request parts.
pub fn request(binding: &Binding, parts: &Parts<'_>) -> Result<DynamicMessage, RequestError> {
    let input = binding.rpc.input();
    let mut root = Map::new();
    match &binding.body {
        Body::None => {}
        Body::All => root = json_object(parts)?,
        Body::Field(name) => {
            let field = input
                .get_field_by_name(name)
                .ok_or_else(|| AppError::internal(format!("the body field {name} does not exist")))?;
            let value = if is_http_body(&field) {
                raw_body(parts)
            } else {
                json_value(parts)?
            };
            if !value.is_null() {
                root.insert(field.name().to_owned(), value);
            }
        }
    }
    let mut violations = Vec::new();
    for (path, value) in &parts.variables {
        if let Err(description) = insert(&input, &mut root, path, vec![value.clone()]) {
            violations.push(FieldViolation {
                field: path.clone(),
                description,
            });
        }
    }
    let mut query: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(parts.query.unwrap_or_default().as_bytes()) {
        match query.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value.into_owned()),
            None => query.push((key.into_owned(), vec![value.into_owned()])),
        }
    }
    for (key, values) in query {
        let bound_elsewhere = binding.body == Body::All
            || matches!(&binding.body, Body::Field(body) if first_segment(&input, &key).as_deref() == Some(body.as_str()))
            || parts.variables.iter().any(|(path, _)| *path == key);
        let result = if bound_elsewhere {
            Err("is set by the path or body, not the query string".to_owned())
        } else {
            insert(&input, &mut root, &key, values)
        };
        if let Err(description) = result {
            violations.push(FieldViolation {
                field: key,
                description,
            });
        }
    }
    if !violations.is_empty() {
        return Err(AppError::InvalidArgument(violations).into());
    }
    DynamicMessage::deserialize_with_options(
        input,
        Value::Object(root),
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| invalid_json(&e.to_string()))
}

/// The proto3 JSON of `message` (lowerCamelCase names, 64-bit integers as
/// strings, enums by name).
pub fn to_json(message: &DynamicMessage) -> Result<Value, AppError> {
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(AppError::internal)
}

fn invalid_json(detail: &str) -> RequestError {
    // The parser names an unknown field ("unrecognized field name 'x'");
    // otherwise the body as a whole is what the client sent wrong.
    let field = detail
        .split_once("field name '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map_or("body", |(name, _)| name);
    RequestError::Invalid(AppError::invalid(field, detail.to_owned()))
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|ct| {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence == "application/json" || essence.ends_with("+json")
    })
}

fn json_value(parts: &Parts<'_>) -> Result<Value, RequestError> {
    if parts.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    if !is_json(parts.content_type) {
        return Err(RequestError::UnsupportedMediaType(format!(
            "send the body as application/json, not {}",
            parts.content_type.unwrap_or_default()
        )));
    }
    serde_json::from_slice(parts.body).map_err(|e| invalid_json(&format!("is not valid JSON: {e}")))
}

fn json_object(parts: &Parts<'_>) -> Result<Map<String, Value>, RequestError> {
    match json_value(parts)? {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        _ => Err(invalid_json("must be a JSON object")),
    }
}

fn is_http_body(field: &FieldDescriptor) -> bool {
    matches!(field.kind(), Kind::Message(m) if m.full_name() == "google.api.HttpBody")
}

/// A raw body as the JSON of a `google.api.HttpBody`.
fn raw_body(parts: &Parts<'_>) -> Value {
    serde_json::json!({
        "contentType": parts.content_type.unwrap_or("application/octet-stream"),
        "data": base64::engine::general_purpose::STANDARD.encode(parts.body),
    })
}

/// The top-level field a dotted path starts with, by its proto name.
fn first_segment(input: &MessageDescriptor, path: &str) -> Option<String> {
    let first = path.split('.').next()?;
    find_field(input, first).map(|f| f.name().to_owned())
}

/// A field by its proto name or JSON name.
fn find_field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
}

/// Sets the field at the dotted `path` of the JSON object `root` (of type
/// `message`) from text values, typed as the field needs.
fn insert(
    message: &MessageDescriptor,
    root: &mut Map<String, Value>,
    path: &str,
    values: Vec<String>,
) -> Result<(), String> {
    let mut descriptor = message.clone();
    let mut object = root;
    let names: Vec<&str> = path.split('.').collect();
    for (i, name) in names.iter().enumerate() {
        let field =
            find_field(&descriptor, name).ok_or_else(|| "is not a field of the request".to_owned())?;
        // Keep the spelling the body used, so a field is never set twice.
        let key = if object.contains_key(field.json_name()) {
            field.json_name().to_owned()
        } else {
            field.name().to_owned()
        };
        if i + 1 == names.len() {
            let value = if field.is_list() {
                Value::Array(
                    values
                        .iter()
                        .map(|v| scalar(&field, v))
                        .collect::<Result<_, _>>()?,
                )
            } else {
                match values.as_slice() {
                    [one] => scalar(&field, one)?,
                    _ => return Err("is given more than once".to_owned()),
                }
            };
            object.insert(key, value);
            return Ok(());
        }
        let Kind::Message(inner) = field.kind() else {
            return Err(format!("`{name}` has no fields"));
        };
        if field.is_list() || field.is_map() || is_well_known(&inner) {
            return Err(format!("`{name}` cannot be set field by field"));
        }
        let entry = object.entry(key).or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(next) = entry else {
            return Err(format!("`{name}` is not an object"));
        };
        object = next;
        descriptor = inner;
    }
    Ok(())
}

fn is_well_known(message: &MessageDescriptor) -> bool {
    message.package_name() == "google.protobuf"
}

/// The JSON of a text value for `field`: what the proto3 JSON parser takes.
fn scalar(field: &FieldDescriptor, text: &str) -> Result<Value, String> {
    Ok(match field.kind() {
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err("must be true or false".to_owned()),
        },
        Kind::Double | Kind::Float => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| "must be a number".to_owned())?,
        Kind::Message(m) if !is_well_known(&m) => return Err("cannot be set from text".to_owned()),
        // Integers go as strings (proto3 JSON takes both), as do strings,
        // bytes (base64), enum names and well-known types (timestamps,
        // durations, field masks are strings in JSON).
        _ => Value::String(text.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use prost_reflect::{DescriptorPool, ReflectMessage};

    use super::*;
    use crate::edge::rules::Template;

    fn bound(rpc: &str, body: Body) -> Binding {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let (service, method) = rpc.rsplit_once('.').unwrap();
        let rpc = pool
            .get_service_by_name(service)
            .unwrap()
            .methods()
            .find(|m| m.name() == method)
            .unwrap();
        Binding {
            method: http::Method::GET,
            template: Template::parse("/v1/x").unwrap(),
            body,
            response_body: None,
            rpc,
        }
    }

    #[test]
    fn query_parameters_fill_nested_repeated_and_typed_fields() {
        let update = bound("debrief.v1.ProcessingService.UpdateSamplingConfig", Body::None);
        let message = request(
            &update,
            &Parts {
                variables: vec![("sampling_config.name".into(), "users/me/samplingConfig".into())],
                // Dotted paths, either spelling, a well-known type as text.
                query: Some("samplingConfig.strategy=SAMPLING_STRATEGY_UNIFORM&sampling_config.budget=600s&updateMask=strategy,budget"),
                content_type: None,
                body: b"",
            },
        )
        .map_err(|_| ())
        .unwrap();
        let json = to_json(&message).unwrap();
        assert_eq!(json["samplingConfig"]["name"], "users/me/samplingConfig");
        assert_eq!(json["samplingConfig"]["strategy"], "SAMPLING_STRATEGY_UNIFORM");
        assert_eq!(json["samplingConfig"]["budget"], "600s");
        assert_eq!(json["updateMask"], "strategy,budget");
        assert_eq!(message.descriptor().name(), "UpdateSamplingConfigRequest");

        let listing = bound("debrief.v1.MeetingService.ListMeetings", Body::None);
        let message = request(
            &listing,
            &Parts {
                variables: vec![],
                query: Some("statuses=MEETING_STATUS_READY&statuses=MEETING_STATUS_FAILED&pageSize=7"),
                content_type: None,
                body: b"",
            },
        )
        .map_err(|_| ())
        .unwrap();
        let json = to_json(&message).unwrap();
        assert_eq!(
            json["statuses"],
            serde_json::json!(["MEETING_STATUS_READY", "MEETING_STATUS_FAILED"])
        );
        assert_eq!(json["pageSize"], 7);

        // An unknown parameter and a bad value are field violations.
        let refused = request(
            &listing,
            &Parts {
                variables: vec![],
                query: Some("colour=red&pageSize=x"),
                content_type: None,
                body: b"",
            },
        );
        let Err(RequestError::Invalid(AppError::InvalidArgument(violations))) = refused else {
            panic!("expected field violations");
        };
        assert_eq!(violations[0].field, "colour");
    }

    mod properties {
        use proptest::prelude::*;

        use crate::edge::bindings_for_tests as api;
        use prost_reflect::ReflectMessage;

        use super::*;

        /// Any JSON value, a few levels deep.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                "[a-zA-Z0-9_ .:/-]{0,12}".prop_map(Value::from),
                Just(Value::from("MEETING_STATUS_READY")),
                Just(Value::from("600s")),
                Just(Value::from("2026-12-02T10:00:00Z")),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    proptest::collection::btree_map("[a-zA-Z_]{1,10}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// The dotted names a query string may use for `binding`'s input:
        /// its fields, either spelling, and one level of their fields.
        fn names(binding: &Binding) -> Vec<String> {
            let mut names = vec!["nope".to_owned()];
            for field in binding.rpc.input().fields() {
                names.push(field.name().to_owned());
                names.push(field.json_name().to_owned());
                if let prost_reflect::Kind::Message(message) = field.kind() {
                    names.extend(
                        message
                            .fields()
                            .map(|f| format!("{}.{}", field.json_name(), f.json_name())),
                    );
                }
            }
            names
        }

        proptest! {
            #![proptest_config(crate::edge::proptest_config(256))]

            /// Whatever body, query string and path values a client sends,
            /// building the input message of any binding answers with the
            /// message or a client error (400 with the fields, or 415), never
            /// a panic or a server error, and a message it builds is of the
            /// RPC's input type.
            #[test]
            fn any_request_becomes_the_input_message_or_a_client_error(
                index in 0..1000usize,
                body in json(),
                raw_body in proptest::collection::vec(any::<u8>(), 0..16),
                send_raw in any::<bool>(),
                content_type in prop_oneof![Just(None), Just(Some("application/json")), Just(Some("text/plain")), Just(Some("application/octet-stream"))],
                picks in proptest::collection::vec((0..100usize, "[a-zA-Z0-9_ %:.,-]{0,10}"), 0..5),
                variable in "[a-zA-Z0-9/%_-]{0,16}",
            ) {
                let binding = &api()[index % api().len()];
                let names = names(binding);
                let query: String = picks
                    .iter()
                    .map(|(i, value)| format!("{}={}", names[i % names.len()], value))
                    .collect::<Vec<_>>()
                    .join("&");
                let variables = match binding.template.parts.iter().find_map(|p| match p {
                    crate::edge::rules::Part::Variable(v) => Some(v.field.clone()),
                    _ => None,
                }) {
                    Some(field) => vec![(field, variable)],
                    None => vec![],
                };
                let json_body = body.to_string().into_bytes();
                let parts = Parts {
                    variables,
                    query: Some(&query),
                    content_type,
                    body: if send_raw { &raw_body } else { &json_body },
                };
                match request(binding, &parts) {
                    Ok(message) => prop_assert_eq!(message.descriptor(), binding.rpc.input()),
                    Err(RequestError::UnsupportedMediaType(_)) => {}
                    Err(RequestError::Invalid(AppError::InvalidArgument(violations))) => {
                        prop_assert!(!violations.is_empty());
                    }
                    Err(RequestError::Invalid(other)) => prop_assert!(false, "{:?} for {:?}", other, binding.template.text),
                }
            }
        }
    }
}
