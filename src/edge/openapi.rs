//! The OpenAPI 3.1 document of the HTTP/JSON edge, generated from the same
//! descriptors and bindings the edge serves: paths and parameters from the
//! path templates, schemas from the messages, descriptions from the proto
//! comments, the JSON `google.rpc.Status` as the error, and bearer auth.

use std::collections::BTreeMap;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};
use prost_types::FileDescriptorProto;
use serde_json::{Map, Value, json};

use super::rules::{Binding, Body, Part, Segment};

/// The document for `bindings`.
pub fn document(pool: &DescriptorPool, bindings: &[Binding]) -> Value {
    let mut schemas = Schemas::default();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut operation_ids: BTreeMap<String, usize> = BTreeMap::new();
    for binding in bindings {
        let (path, path_fields) = openapi_path(binding);
        let rpc = &binding.rpc;
        let base_id = format!("{}_{}", rpc.parent_service().name(), rpc.name());
        let seen = operation_ids.entry(base_id.clone()).or_default();
        *seen += 1;
        let operation_id = if *seen == 1 {
            base_id
        } else {
            format!("{base_id}_{seen}")
        };
        let mut parameters: Vec<Value> = path_fields
            .iter()
            .map(|(name, field)| {
                json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "description": format!("A segment of `{field}`."),
                    "schema": {"type": "string", "pattern": "^[^/]+$"},
                })
            })
            .collect();
        let bound: Vec<&str> = path_fields.iter().map(|(_, f)| f.as_str()).collect();
        let input = rpc.input();
        let mut request_body = None;
        match &binding.body {
            Body::All => {
                request_body = Some(json!({
                    "required": true,
                    "content": {"application/json": {"schema": schemas.message(&input)}},
                }));
            }
            Body::Field(name) => {
                if let Some(field) = input.get_field_by_name(name) {
                    let content = if matches!(field.kind(), Kind::Message(m) if is_file(&m)) {
                        json!({"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})
                    } else {
                        json!({"application/json": {"schema": schemas.field(&field)}})
                    };
                    request_body = Some(json!({"required": true, "content": content}));
                }
                query_parameters(&input, &bound, Some(name), &mut schemas, &mut parameters);
            }
            Body::None => query_parameters(&input, &bound, None, &mut schemas, &mut parameters),
        }
        let output = rpc.output();
        let response_schema = match &binding.response_body {
            Some(name) => output
                .get_field_by_name(name)
                .map_or_else(|| json!({}), |field| schemas.field(&field)),
            None => schemas.message(&output),
        };
        if rpc.is_server_streaming() && binding.method == http::Method::GET {
            parameters.push(json!({
                "name": "ticket",
                "in": "query",
                "required": false,
                "description": "A stream ticket from AuthService.CreateStreamTicket, for clients that cannot send an Authorization header (a browser EventSource). Single-use, valid for 60 seconds.",
                "schema": {"type": "string"},
            }));
        }
        let file = rpc.is_server_streaming() && is_file(&output);
        if file {
            parameters.push(json!({
                "name": "Range",
                "in": "header",
                "required": false,
                "description": "One range of bytes, e.g. `bytes=0-1048575`; answered 206 with Content-Range.",
                "schema": {"type": "string"},
            }));
        }
        let content = if file {
            json!({"*/*": {"schema": {"type": "string", "format": "binary"}}})
        } else if rpc.is_server_streaming() {
            // Each event: its data is one message as JSON; its id the event
            // id when the message carries one; `error` events carry a
            // google.rpc.Status.
            json!({
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "event": {"type": "string", "enum": ["message", "error"]},
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "contentSchema": response_schema,
                            },
                        },
                        "required": ["data"],
                    },
                },
                "application/x-ndjson": {
                    "schema": {"type": "string"},
                    "x-item-schema": response_schema,
                },
            })
        } else {
            json!({"application/json": {"schema": response_schema}})
        };
        let mut operation = json!({
            "operationId": operation_id,
            "tags": [rpc.parent_service().name()],
            "summary": summary(rpc),
            "description": comment_of(rpc.parent_file().file_descriptor_proto(), rpc.path()).unwrap_or_default(),
            "parameters": parameters,
            "responses": {
                "200": {"description": "Success.", "content": content},
                "default": {
                    "description": "An error: a google.rpc.Status, with the HTTP status of its code.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
                },
            },
        });
        if file {
            operation["responses"]["206"] =
                json!({"description": "The range asked for.", "content": content});
        }
        if let Some(body) = request_body {
            operation["requestBody"] = body;
        }
        let grpc_path = format!("/{}/{}", rpc.parent_service().full_name(), rpc.name());
        if !crate::auth::layer::needs_credentials(&grpc_path) {
            operation["security"] = json!([]);
        }
        paths
            .entry(path)
            .or_default()
            .insert(binding.method.as_str().to_ascii_lowercase(), operation);
    }
    if let Some(status) = pool.get_message_by_name("google.rpc.Status") {
        schemas.message(&status);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "debrief",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The debrief API over HTTP/JSON: every RPC of the gRPC API at the path of its \
                google.api.http binding, with proto3 JSON bodies. Send `Authorization: Bearer <access token \
                or API key>`; no cookies are read or set, so cross-site request forgery cannot apply.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.done,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An access token from AuthService.SignIn, or an API key (`dbk_...`).",
                },
            },
        },
        "security": [{"bearer": []}],
    })
}

/// The OpenAPI path of a binding (each `*` of a variable becomes a path
/// parameter named after the segment before it) and the parameters with
/// the field each one builds.
fn openapi_path(binding: &Binding) -> (String, Vec<(String, String)>) {
    let mut path = String::new();
    let mut parameters: Vec<(String, String)> = Vec::new();
    let mut previous = String::new();
    let mut push =
        |segment: &Segment, field: Option<&str>, path: &mut String, previous: &mut String| match segment {
            Segment::Literal(text) => {
                path.push('/');
                path.push_str(text);
                previous.clone_from(text);
            }
            Segment::Any | Segment::Rest => {
                let base = match previous.strip_suffix('s') {
                    Some(singular) if !singular.is_empty() => singular.to_owned(),
                    _ => field.unwrap_or("value").replace('.', "_"),
                };
                let mut name = base.clone();
                let mut n = 2;
                while parameters.iter().any(|(p, _)| *p == name) {
                    name = format!("{base}{n}");
                    n += 1;
                }
                path.push_str(&format!("/{{{name}}}"));
                parameters.push((name, field.unwrap_or_default().to_owned()));
            }
        };
    for part in &binding.template.parts {
        match part {
            Part::Segment(segment) => push(segment, None, &mut path, &mut previous),
            Part::Variable(variable) => {
                for segment in &variable.pattern {
                    push(segment, Some(&variable.field), &mut path, &mut previous);
                }
            }
        }
    }
    if let Some(verb) = &binding.template.verb {
        path.push(':');
        path.push_str(verb);
    }
    (path, parameters)
}

/// Query parameters: the input's top-level fields not in the path or body
/// that can be written as text (scalars, enums, their lists, and the
/// well-known types JSON writes as strings).
fn query_parameters(
    input: &MessageDescriptor,
    bound: &[&str],
    body: Option<&str>,
    schemas: &mut Schemas,
    parameters: &mut Vec<Value>,
) {
    for field in input.fields() {
        let name = field.name();
        if body == Some(name) || bound.iter().any(|b| b.split('.').next() == Some(name)) || field.is_map() {
            continue;
        }
        if let Kind::Message(m) = field.kind()
            && !matches!(
                m.full_name(),
                "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask"
            )
        {
            continue;
        }
        let mut parameter = json!({
            "name": field.json_name(),
            "in": "query",
            "schema": schemas.field(&field),
            "description": comment_of(field.parent_message().parent_file_descriptor_proto(), field.path())
                .unwrap_or_default(),
        });
        if field.is_list() {
            parameter["explode"] = json!(true);
        }
        parameters.push(parameter);
    }
}

/// The first sentence of an RPC's comment.
fn summary(rpc: &MethodDescriptor) -> String {
    let comment = comment_of(rpc.parent_file().file_descriptor_proto(), rpc.path()).unwrap_or_default();
    comment
        .split(". ")
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_owned()
}

/// The leading comment of the element at `path` in `file`.
fn comment_of(file: &FileDescriptorProto, path: &[i32]) -> Option<String> {
    let info = file.source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    // Lint directives (`buf:lint:ignore …`) are for the linter, not readers.
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("buf:"))
        .collect();
    Some(lines.join(" ").trim().to_owned())
}

/// Message schemas collected under `components.schemas`.
#[derive(Default)]
struct Schemas {
    done: BTreeMap<String, Value>,
}

impl Schemas {
    /// A reference to `message`'s schema (or the inline schema of a
    /// well-known type), adding it and what it uses.
    fn message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(schema) = well_known(message) {
            return schema;
        }
        let name = message.full_name().to_owned();
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        if self.done.contains_key(&name) {
            return reference;
        }
        // Placed first, so a message that contains itself terminates.
        self.done.insert(name.clone(), json!({}));
        let mut properties = Map::new();
        for field in message.fields() {
            let mut schema = self.field(&field);
            if let Some(text) = comment_of(message.parent_file_descriptor_proto(), field.path())
                && let Value::Object(object) = &mut schema
                && !object.contains_key("$ref")
            {
                object.insert("description".into(), json!(text));
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        });
        if message.full_name() == "google.protobuf.Any" {
            schema =
                json!({"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]});
        }
        if let Some(text) = comment_of(message.parent_file_descriptor_proto(), message.path()) {
            schema["description"] = json!(text);
        }
        self.done.insert(name, schema);
        reference
    }

    /// The schema of a field's JSON value.
    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return json!({"type": "object"});
            };
            let value = entry.map_entry_value_field();
            return json!({"type": "object", "additionalProperties": self.single(&value)});
        }
        let single = self.single(field);
        if field.is_list() {
            json!({"type": "array", "items": single})
        } else {
            single
        }
    }

    fn single(&mut self, field: &FieldDescriptor) -> Value {
        match field.kind() {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({"type": "integer", "format": "int32"}),
            Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Enum(e) => json!({
                "type": "string",
                "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>(),
            }),
            Kind::Message(m) => self.message(&m),
        }
    }
}

/// Inline schemas of the well-known types JSON writes specially.
fn well_known(message: &MessageDescriptor) -> Option<Value> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}),
        "google.protobuf.FieldMask" => json!({"type": "string"}),
        "google.protobuf.Empty" => json!({"type": "object", "additionalProperties": false}),
        "google.protobuf.Struct" => json!({"type": "object"}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array"}),
        "google.protobuf.StringValue" => json!({"type": "string"}),
        "google.protobuf.BoolValue" => json!({"type": "boolean"}),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => json!({"type": "integer"}),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => json!({"type": "number"}),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => json!({"type": "string"}),
        "google.protobuf.BytesValue" => json!({"type": "string", "contentEncoding": "base64"}),
        _ => return None,
    })
}

/// A file's bytes: `google.api.HttpBody`, sent or answered as it is.
fn is_file(message: &MessageDescriptor) -> bool {
    message.full_name() == "google.api.HttpBody"
}
