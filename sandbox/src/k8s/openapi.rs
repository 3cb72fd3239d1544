//! The OpenAPI documents kubectl fetches before `apply`. kubectl refuses to
//! validate (and so to apply) when either endpoint fails, but needs nothing
//! in them: with no schemas it skips client-side validation of a kind and
//! falls back to its compiled-in types for strategic merge patches (JSON
//! merge patches for custom resources).

use serde_json::{Value, json};

/// Media type of the v2 document; client-go decodes only protobuf here.
pub const V2_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2`: a gnostic `openapi_v2.Document` holding only `swagger`
/// (field 1) and `info` (field 2: title, version), protobuf-encoded.
pub fn v2_document() -> Vec<u8> {
    fn field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
        // Wire type 2 (length-delimited); every length here is below 128.
        out.push((tag << 3) | 2);
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(1, b"ferry-sandbox", &mut info);
    field(2, b"v1.32.0", &mut info);
    let mut doc = Vec::new();
    field(1, b"2.0", &mut doc);
    field(2, &info, &mut doc);
    doc
}

/// `/openapi/v3`: the root listing no group/version documents.
pub fn v3_root() -> Value {
    json!({"paths": {}})
}

#[cfg(test)]
mod tests {
    #[test]
    fn v2_document_is_well_formed() {
        let doc = super::v2_document();
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(doc[5], 0x12);
        assert_eq!(doc.len(), 7 + doc[6] as usize);
    }
}
