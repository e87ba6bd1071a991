//! The HTTP bindings of the API, read from the `google.api.http` options in
//! the descriptor set: path templates and how a request maps onto the RPC's
//! input message.

use http::Method;
use prost_reflect::{DescriptorPool, MethodDescriptor, Value};

use crate::pb::google::api::{HttpRule, http_rule::Pattern};

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal this text.
    Literal(String),
    /// `*`: any one segment.
    Any,
    /// `**`: any number of segments (last only).
    Rest,
}

/// A variable of a template: a field path bound to a run of segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Dotted field path in the input message, e.g. `sampling_config.name`.
    pub field: String,
    /// The segments it spans.
    pub pattern: Vec<Segment>,
}

/// A part of a template: a plain segment or a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A segment outside any variable.
    Segment(Segment),
    /// A variable.
    Variable(Variable),
}

/// A parsed path template such as `/v1/{name=meetings/*}:watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Its parts, in order.
    pub parts: Vec<Part>,
    /// The custom verb after `:`, if any.
    pub verb: Option<String>,
    /// The template as written.
    pub text: String,
}

/// Why a template could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("bad path template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: &'static str,
}

impl Template {
    /// Parses a template of the `google.api.http` grammar.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let bad = |reason| TemplateError {
            template: text.to_owned(),
            reason,
        };
        let rest = text.strip_prefix('/').ok_or_else(|| bad("must start with /"))?;
        // The verb follows the last `:` outside braces.
        let mut depth = 0;
        let mut verb_at = None;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        let (path, verb) = match verb_at {
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_owned())),
            None => (rest, None),
        };
        let mut parts = Vec::new();
        let mut chars = path.split('/').peekable();
        while let Some(piece) = chars.next() {
            if let Some(open) = piece.strip_prefix('{') {
                // A variable may span several `/`-separated pieces.
                let mut inner = open.to_owned();
                while !inner.ends_with('}') {
                    let next = chars.next().ok_or_else(|| bad("unclosed variable"))?;
                    inner.push('/');
                    inner.push_str(next);
                }
                inner.pop();
                let (field, pattern) = match inner.split_once('=') {
                    Some((field, pattern)) => (field, pattern.split('/').map(segment).collect()),
                    None => (inner.as_str(), vec![Segment::Any]),
                };
                parts.push(Part::Variable(Variable {
                    field: field.to_owned(),
                    pattern,
                }));
            } else if piece.is_empty() {
                return Err(bad("empty segment"));
            } else {
                parts.push(Part::Segment(segment(piece)));
            }
        }
        Ok(Self {
            parts,
            verb,
            text: text.to_owned(),
        })
    }

    /// Matches a request path; returns the variables' values (percent
    /// decoded), or None.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let rest = path.strip_prefix('/')?;
        let (rest, verb) = match &self.verb {
            Some(verb) => (rest.strip_suffix(verb.as_str())?.strip_suffix(':')?, Some(verb)),
            None => (rest, None),
        };
        // Without a verb in the template, a `:` in the last segment would be
        // another binding's verb.
        if verb.is_none() && rest.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            return None;
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let mut at = 0;
        let mut values = Vec::new();
        for part in &self.parts {
            match part {
                Part::Segment(segment) => {
                    at = take(segment, &segments, at)?;
                }
                Part::Variable(variable) => {
                    let start = at;
                    for segment in &variable.pattern {
                        at = take(segment, &segments, at)?;
                    }
                    let raw = segments[start..at].join("/");
                    values.push((variable.field.clone(), decode(&raw)?));
                }
            }
        }
        (at == segments.len()).then_some(values)
    }
}

fn segment(text: &str) -> Segment {
    match text {
        "*" => Segment::Any,
        "**" => Segment::Rest,
        literal => Segment::Literal(literal.to_owned()),
    }
}

/// Consumes `segment` from `segments` at `at`; returns the next position.
fn take(segment: &Segment, segments: &[&str], at: usize) -> Option<usize> {
    match segment {
        Segment::Literal(text) => (segments.get(at)? == text).then_some(at + 1),
        Segment::Any => segments.get(at).filter(|s| !s.is_empty()).map(|_| at + 1),
        Segment::Rest => Some(segments.len()),
    }
}

fn decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Exactly two hex digits: `from_str_radix` alone would also
            // take a sign, reading `%+1` as byte 1.
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where the request body goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body; every field not in the path comes from the query string.
    None,
    /// `*`: the whole message.
    All,
    /// One (top-level) field; the others come from the query string.
    Field(String),
}

/// One HTTP binding of an RPC.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The HTTP method.
    pub method: Method,
    /// The path template.
    pub template: Template,
    /// Where the body goes.
    pub body: Body,
    /// The response field sent as the body; None: the whole response.
    pub response_body: Option<String>,
    /// The RPC.
    pub rpc: MethodDescriptor,
}

/// Every binding of every RPC in `pool`'s `debrief.v1` services, including
/// additional bindings.
pub fn bindings(pool: &DescriptorPool) -> Result<Vec<Binding>, TemplateError> {
    let Some(extension) = pool.get_extension_by_name("google.api.http") else {
        return Ok(Vec::new());
    };
    let mut all = Vec::new();
    for service in pool.services().filter(|s| s.package_name() == "debrief.v1") {
        for rpc in service.methods() {
            let options = rpc.options();
            if !options.has_extension(&extension) {
                continue;
            }
            let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                continue;
            };
            let Ok(rule) = rule.transcode_to::<HttpRule>() else {
                continue;
            };
            for rule in std::iter::once(&rule).chain(rule.additional_bindings.iter()) {
                if let Some(binding) = binding(rule, &rpc)? {
                    all.push(binding);
                }
            }
        }
    }
    Ok(all)
}

fn binding(rule: &HttpRule, rpc: &MethodDescriptor) -> Result<Option<Binding>, TemplateError> {
    let (method, path) = match &rule.pattern {
        Some(Pattern::Get(path)) => (Method::GET, path),
        Some(Pattern::Post(path)) => (Method::POST, path),
        Some(Pattern::Put(path)) => (Method::PUT, path),
        Some(Pattern::Patch(path)) => (Method::PATCH, path),
        Some(Pattern::Delete(path)) => (Method::DELETE, path),
        Some(Pattern::Custom(custom)) => match Method::from_bytes(custom.kind.as_bytes()) {
            Ok(method) => (method, &custom.path),
            Err(_) => return Ok(None),
        },
        None => return Ok(None),
    };
    Ok(Some(Binding {
        method,
        template: Template::parse(path)?,
        body: match rule.body.as_str() {
            "" => Body::None,
            "*" => Body::All,
            field => Body::Field(field.to_owned()),
        },
        response_body: (!rule.response_body.is_empty()).then(|| rule.response_body.clone()),
        rpc: rpc.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_bind_variables_verbs_and_multi_segment_patterns() {
        let t = Template::parse("/v1/{name=meetings/*}:watch").unwrap();
        assert_eq!(
            t.matches("/v1/meetings/abc:watch"),
            Some(vec![("name".into(), "meetings/abc".into())])
        );
        assert_eq!(t.matches("/v1/meetings/abc"), None);
        assert_eq!(t.matches("/v1/meetings/abc/x:watch"), None);

        let t = Template::parse("/v1/{sampling_config.name=users/*/samplingConfig}").unwrap();
        assert_eq!(
            t.matches("/v1/users/me/samplingConfig"),
            Some(vec![(
                "sampling_config.name".into(),
                "users/me/samplingConfig".into()
            )])
        );
        let plain = Template::parse("/v1/{name=meetings/*}").unwrap();
        assert_eq!(
            plain.matches("/v1/meetings/abc:watch"),
            None,
            "a verb is another binding's"
        );
        assert_eq!(
            plain.matches("/v1/meetings/a%20b"),
            Some(vec![("name".into(), "meetings/a b".into())])
        );
        let simple = Template::parse("/v1/plans").unwrap();
        assert_eq!(simple.matches("/v1/plans"), Some(vec![]));
        assert_eq!(simple.matches("/v1/plans/x"), None);
    }

    #[test]
    fn every_binding_of_the_api_parses() {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let all = bindings(&pool).unwrap();
        assert!(all.len() > 50, "{}", all.len());
        assert!(
            all.iter()
                .any(|b| b.template.text == "/v1/{name=plans/*/samplingConfig}" && b.method == Method::GET)
        );
    }

    mod properties {
        use proptest::prelude::*;

        use crate::edge::bindings_for_tests as api;

        use super::*;

        /// `value` percent-encoded as a client would put it in a path
        /// segment (every byte outside the unreserved set escaped).
        fn encode(value: &str) -> String {
            value
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        }

        /// A path for `template` with `values` in its `*` and `**` places;
        /// returns it with the variables' expected (decoded) values.
        fn fill(
            template: &Template,
            values: &mut impl Iterator<Item = String>,
        ) -> (String, Vec<(String, String)>) {
            let mut path = String::new();
            let mut expected = Vec::new();
            let mut fill_segment =
                |segment: &Segment, raw: &mut Vec<String>, decoded: &mut Vec<String>| match segment {
                    Segment::Literal(text) => {
                        raw.push(text.clone());
                        decoded.push(text.clone());
                    }
                    Segment::Any | Segment::Rest => {
                        let value = values.next().unwrap();
                        raw.push(encode(&value));
                        decoded.push(value);
                    }
                };
            for part in &template.parts {
                let (mut raw, mut decoded) = (Vec::new(), Vec::new());
                match part {
                    Part::Segment(segment) => fill_segment(segment, &mut raw, &mut decoded),
                    Part::Variable(variable) => {
                        for segment in &variable.pattern {
                            fill_segment(segment, &mut raw, &mut decoded);
                        }
                        expected.push((variable.field.clone(), decoded.join("/")));
                    }
                }
                path.push('/');
                path.push_str(&raw.join("/"));
            }
            if let Some(verb) = &template.verb {
                path.push(':');
                path.push_str(verb);
            }
            (path, expected)
        }

        proptest! {
            #![proptest_config(crate::edge::proptest_config(64))]

            /// Any path built from any binding's template, with any text in
            /// its wildcards, is routed to that binding (the first of its
            /// method to match, as the edge picks) with exactly that text.
            #[test]
            fn every_binding_routes_its_own_paths_with_their_values(
                index in 0..1000usize,
                values in proptest::collection::vec("[^/]{1,12}", 8),
            ) {
                let api = api();
                let binding = &api[index % api.len()];
                let (path, expected) = fill(&binding.template, &mut values.into_iter());
                let first = api
                    .iter()
                    .filter(|b| b.method == binding.method)
                    .find_map(|b| b.template.matches(&path).map(|found| (b, found)));
                let (routed, found) = first.unwrap_or_else(|| panic!("{path} matched nothing"));
                prop_assert_eq!(&routed.template.text, &binding.template.text, "{}", path);
                prop_assert_eq!(routed.rpc.full_name(), binding.rpc.full_name());
                prop_assert_eq!(found, expected);
            }

            /// Whatever a client sends as a path, matching answers without
            /// panicking, and a value it returns is the path's own decoded text.
            #[test]
            fn matching_any_path_never_panics(path in "/[a-zA-Z0-9/:%{}*=._~-]{0,40}") {
                for binding in api() {
                    if let Some(values) = binding.template.matches(&path) {
                        for (_, value) in values {
                            prop_assert!(!value.is_empty() || path.contains("//"), "{path}: {value:?}");
                        }
                    }
                }
            }

            /// Parsing any text as a template fails cleanly or yields a
            /// template that matches without panicking.
            #[test]
            fn parsing_any_template_never_panics(text in "/?[a-z{}=*/:.]{0,30}", path in "/[a-z/:]{0,20}") {
                if let Ok(template) = Template::parse(&text) {
                    let _ = template.matches(&path);
                }
            }

            /// A `%` escape is two hexadecimal digits, nothing else.
            #[test]
            fn percent_escapes_are_exactly_two_hex_digits(escape in "[0-9a-fA-F+ -]{2}") {
                let hex = escape.bytes().all(|b| b.is_ascii_hexdigit());
                // One byte on its own is text only below 0x80.
                let text = hex && u8::from_str_radix(&escape, 16).is_ok_and(|b| b < 0x80);
                prop_assert_eq!(decode(&format!("%{escape}")).is_some(), text, "{}", escape);
            }
        }
    }
}
