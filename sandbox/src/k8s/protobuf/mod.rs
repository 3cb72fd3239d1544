//! Request bodies in Kubernetes' protobuf encoding, turned into the JSON the
//! store keeps. client-go's generated clients for built-in kinds send
//! `application/vnd.kubernetes.protobuf` by default and, unlike CBOR, do not
//! fall back to JSON on 415 — so `kubectl create namespace` and `kubectl
//! create deployment` only work when the server reads protobuf.
//!
//! A body is `k8s\0` followed by a `runtime.Unknown` message: `typeMeta`
//! (1: apiVersion 1, kind 2), `raw` (2: the object's own message),
//! `contentEncoding` (3) and `contentType` (4). The object's message is read
//! field by field from the tables in [`schema`]; a field the tables lack is
//! refused with its path, never dropped. Answers stay JSON: client-go asks
//! for `protobuf,json` and decodes whichever the server sends.

mod openapi;
mod schema;
mod wire;

use base64::Engine;

pub(crate) use openapi::kind_schemas;
use serde_json::{Map, Value, json};

use schema::{Card, Field, Msg, Ty};
use wire::{Fields, Wire, WireError};

/// The media type of protobuf request bodies.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be read, and where in the object.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body does not start with the Kubernetes protobuf envelope \"k8s\\0\"")]
    NoEnvelope,
    #[error("in the protobuf envelope: {0}")]
    Envelope(String),
    #[error(
        "the protobuf envelope carries content encoding \"{0}\"; the sandbox reads only unencoded bodies"
    )]
    ContentEncoding(String),
    #[error(
        "{kind} ({api_version}) is not a kind the sandbox reads from protobuf (it reads {known}); send it as JSON"
    )]
    UnsupportedKind {
        api_version: String,
        kind: String,
        known: String,
    },
    #[error("{kind} at {path}: {reason}")]
    Field {
        kind: String,
        path: String,
        reason: String,
    },
}

impl ProtobufError {
    /// The HTTP status the real server answers with: 415 for a kind it does
    /// not serve as protobuf (custom resources), 400 for a malformed body.
    pub(crate) fn code(&self) -> u16 {
        match self {
            ProtobufError::UnsupportedKind { .. } => 415,
            _ => 400,
        }
    }
}

/// True when `content_type` names the Kubernetes protobuf encoding.
pub(crate) fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Decodes an enveloped protobuf body into the JSON object it encodes,
/// with `apiVersion` and `kind` from the envelope.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoEnvelope)?;
    let envelope = Envelope::read(rest)?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(envelope.content_encoding));
    }
    let msg = schema::KINDS
        .iter()
        .find(|(av, kind, _)| *kind == envelope.kind && (*av == "*" || *av == envelope.api_version))
        .map(|(_, _, msg)| *msg)
        .ok_or_else(|| ProtobufError::UnsupportedKind {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
            known: schema::KINDS
                .iter()
                .map(|(av, kind, _)| format!("{av} {kind}"))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let decoder = Decoder {
        kind: &envelope.kind,
    };
    let mut obj = Map::new();
    if !envelope.api_version.is_empty() {
        obj.insert("apiVersion".into(), json!(envelope.api_version));
    }
    obj.insert("kind".into(), json!(envelope.kind));
    obj.extend(decoder.message(msg, envelope.raw, "")?);
    Ok(Value::Object(obj))
}

/// `runtime.Unknown`, the envelope every protobuf body travels in.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, ProtobufError> {
        let text = |e: WireError| ProtobufError::Envelope(e.to_string());
        let utf8 = |b: &[u8], what: &str| {
            String::from_utf8(b.to_vec())
                .map_err(|_| ProtobufError::Envelope(format!("{what} is not UTF-8")))
        };
        let mut env = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        for field in Fields::new(bytes) {
            match field.map_err(text)? {
                (1, Wire::Bytes(type_meta)) => {
                    for tm in Fields::new(type_meta) {
                        match tm.map_err(text)? {
                            (1, Wire::Bytes(b)) => env.api_version = utf8(b, "apiVersion")?,
                            (2, Wire::Bytes(b)) => env.kind = utf8(b, "kind")?,
                            _ => {}
                        }
                    }
                }
                (2, Wire::Bytes(raw)) => env.raw = raw,
                (3, Wire::Bytes(b)) => env.content_encoding = utf8(b, "contentEncoding")?,
                // contentType (4) names protobuf again; nothing else is defined.
                _ => {}
            }
        }
        if env.kind.is_empty() {
            return Err(ProtobufError::Envelope("typeMeta.kind is empty".into()));
        }
        Ok(env)
    }
}

struct Decoder<'k> {
    kind: &'k str,
}

impl Decoder<'_> {
    fn err(&self, path: &str, reason: impl Into<String>) -> ProtobufError {
        ProtobufError::Field {
            kind: self.kind.to_string(),
            path: if path.is_empty() {
                "the top level".into()
            } else {
                path.to_string()
            },
            reason: reason.into(),
        }
    }

    fn wire(&self, path: &str, e: WireError) -> ProtobufError {
        self.err(path, e.to_string())
    }

    /// One message as a JSON object, zero `omitempty` fields left out.
    fn message(
        &self,
        msg: &Msg,
        bytes: &[u8],
        path: &str,
    ) -> Result<Map<String, Value>, ProtobufError> {
        let mut out = Map::new();
        for item in Fields::new(bytes) {
            let (num, value) = item.map_err(|e| self.wire(path, e))?;
            let field = msg.field(num).ok_or_else(|| {
                self.err(
                    path,
                    format!(
                        "field {num} of {} is not one the sandbox reads from protobuf; send the object as JSON",
                        msg.name
                    ),
                )
            })?;
            let here = if path.is_empty() {
                field.name.to_string()
            } else {
                format!("{path}.{}", field.name)
            };
            self.field(field, value, &here, &mut out)?;
        }
        out.retain(|name, value| {
            let omit = msg
                .fields
                .iter()
                .find(|f| f.name == name)
                .is_some_and(|f| f.card == Card::Omit);
            !(omit && is_zero(value))
        });
        Ok(out)
    }

    fn field(
        &self,
        field: &Field,
        value: Wire<'_>,
        path: &str,
        out: &mut Map<String, Value>,
    ) -> Result<(), ProtobufError> {
        match field.ty {
            Ty::Inline(inner) => {
                let bytes = self.bytes(value, path)?;
                out.extend(self.message(inner, bytes, path)?);
            }
            Ty::StrMap | Ty::BytesMap | Ty::QuantityMap => {
                let bytes = self.bytes(value, path)?;
                let (key, val) = self.map_entry(field.ty, bytes, path)?;
                let map = out
                    .entry(field.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, val);
                }
            }
            _ if field.card == Card::Repeated => {
                let items = match (field.ty, value) {
                    // Packed repeated integers arrive as one byte string.
                    (Ty::Int, Wire::Bytes(b)) => wire::packed_varints(b)
                        .map_err(|e| self.wire(path, e))?
                        .into_iter()
                        .map(|v| json!(v as i64))
                        .collect(),
                    _ => vec![self.single(field.ty, value, path)?],
                };
                let list = out
                    .entry(field.name)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    list.extend(items);
                }
            }
            ty => {
                match self.single(ty, value, path)? {
                    // The zero time is how protobuf writes "unset".
                    Value::Null => out.remove(field.name),
                    v => out.insert(field.name.into(), v),
                };
            }
        }
        Ok(())
    }

    fn bytes<'b>(&self, value: Wire<'b>, path: &str) -> Result<&'b [u8], ProtobufError> {
        match value {
            Wire::Bytes(b) => Ok(b),
            other => Err(self.err(
                path,
                format!("expected a length-delimited field, found {other:?}"),
            )),
        }
    }

    fn string(&self, value: Wire<'_>, path: &str) -> Result<String, ProtobufError> {
        let bytes = self.bytes(value, path)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err(path, "the string is not UTF-8"))
    }

    fn varint(&self, value: Wire<'_>, path: &str) -> Result<u64, ProtobufError> {
        match value {
            Wire::Varint(v) => Ok(v),
            other => Err(self.err(path, format!("expected a varint, found {other:?}"))),
        }
    }

    fn single(&self, ty: Ty, value: Wire<'_>, path: &str) -> Result<Value, ProtobufError> {
        Ok(match ty {
            Ty::Str => json!(self.string(value, path)?),
            Ty::Bytes => {
                json!(base64::engine::general_purpose::STANDARD.encode(self.bytes(value, path)?))
            }
            // int32 and int64 both arrive as the two's complement of an i64.
            Ty::Int => json!(self.varint(value, path)? as i64),
            Ty::Bool => json!(self.varint(value, path)? != 0),
            Ty::Msg(msg) => Value::Object(self.message(msg, self.bytes(value, path)?, path)?),
            Ty::Quantity => self.quantity(self.bytes(value, path)?, path)?,
            Ty::Time => self.time(self.bytes(value, path)?, path)?,
            Ty::IntOrString => self.int_or_string(self.bytes(value, path)?, path)?,
            Ty::FieldsV1 => {
                let mut raw: &[u8] = &[];
                for f in Fields::new(self.bytes(value, path)?) {
                    if let (1, Wire::Bytes(b)) = f.map_err(|e| self.wire(path, e))? {
                        raw = b;
                    }
                }
                serde_json::from_slice(raw)
                    .map_err(|e| self.err(path, format!("fieldsV1 is not JSON: {e}")))?
            }
            Ty::Inline(_) | Ty::StrMap | Ty::BytesMap | Ty::QuantityMap => {
                return Err(self.err(path, "a map or inline struct cannot be a list item"));
            }
        })
    }

    fn map_entry(
        &self,
        ty: Ty,
        bytes: &[u8],
        path: &str,
    ) -> Result<(String, Value), ProtobufError> {
        let mut key = String::new();
        let mut val = match ty {
            Ty::BytesMap | Ty::StrMap => json!(""),
            _ => json!("0"),
        };
        for f in Fields::new(bytes) {
            match f.map_err(|e| self.wire(path, e))? {
                (1, v) => key = self.string(v, path)?,
                (2, v) => {
                    val = match ty {
                        Ty::StrMap => self.single(Ty::Str, v, path)?,
                        Ty::BytesMap => self.single(Ty::Bytes, v, path)?,
                        _ => self.quantity(self.bytes(v, path)?, path)?,
                    }
                }
                (n, _) => return Err(self.err(path, format!("map entry field {n}"))),
            }
        }
        Ok((key, val))
    }

    fn quantity(&self, bytes: &[u8], path: &str) -> Result<Value, ProtobufError> {
        let mut s = String::new();
        for f in Fields::new(bytes) {
            if let (1, v) = f.map_err(|e| self.wire(path, e))? {
                s = self.string(v, path)?;
            }
        }
        Ok(json!(s))
    }

    fn time(&self, bytes: &[u8], path: &str) -> Result<Value, ProtobufError> {
        let mut seconds = 0i64;
        for f in Fields::new(bytes) {
            // Nanos (2) are dropped: metav1.Time is seconds in JSON too.
            if let (1, v) = f.map_err(|e| self.wire(path, e))? {
                seconds = self.varint(v, path)? as i64;
            }
        }
        if seconds == 0 {
            return Ok(Value::Null);
        }
        let secs = u64::try_from(seconds)
            .map_err(|_| self.err(path, format!("time {seconds}s is before 1970")))?;
        Ok(json!(super::clock::rfc3339(secs)))
    }

    fn int_or_string(&self, bytes: &[u8], path: &str) -> Result<Value, ProtobufError> {
        let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
        for f in Fields::new(bytes) {
            match f.map_err(|e| self.wire(path, e))? {
                (1, v) => is_string = self.varint(v, path)? == 1,
                (2, v) => int = self.varint(v, path)? as i64,
                (3, v) => string = self.string(v, path)?,
                (n, _) => return Err(self.err(path, format!("IntOrString field {n}"))),
            }
        }
        Ok(if is_string { json!(string) } else { json!(int) })
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

#[cfg(test)]
mod tests;
