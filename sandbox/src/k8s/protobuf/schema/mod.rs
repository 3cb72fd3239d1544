//! Which protobuf field of a built-in kind is which JSON field: the field
//! numbers of the `generated.proto` messages of `k8s.io/api` and
//! `k8s.io/apimachinery` (v1.36), for the kinds kubectl's typed clients
//! create and the messages they contain. A field missing here is refused
//! by the decoder rather than dropped.
//!
//! Each field says whether JSON keeps its zero value: Kubernetes' protobuf
//! writes every non-pointer scalar, zero or not, while its JSON leaves out
//! zero `omitempty` fields. A field is `keep` when it is a pointer in the Go
//! type (present means set, even to zero) or has no `omitempty`.

mod core_kinds;
mod meta;
mod pod;
mod workloads;

use core_kinds::{CONFIG_MAP, NAMESPACE, SECRET, SERVICE, SERVICE_ACCOUNT};
use meta::DELETE_OPTIONS;
use workloads::{CRON_JOB, DEPLOYMENT, JOB, SCALE};

/// How a field's bytes become JSON.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    Str,
    /// `bytes`: base64 in JSON.
    Bytes,
    /// int32 or int64 (negative values are sign-extended varints).
    Int,
    Bool,
    Msg(&'static Msg),
    /// An embedded struct whose fields JSON puts in the parent object.
    Inline(&'static Msg),
    /// `resource.Quantity`: its string form.
    Quantity,
    /// `meta/v1.Time`: RFC 3339 seconds; the zero time is left out.
    Time,
    /// `intstr.IntOrString`: a JSON number or string.
    IntOrString,
    /// `meta/v1.FieldsV1`: raw JSON bytes.
    FieldsV1,
    StrMap,
    BytesMap,
    QuantityMap,
}

/// How often a field occurs and whether its zero value is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Card {
    /// `omitempty` value field: left out of JSON when zero.
    Omit,
    /// Pointer or non-`omitempty` field: kept even when zero.
    Keep,
    Repeated,
}

#[derive(Debug)]
pub(super) struct Field {
    pub num: u32,
    pub name: &'static str,
    pub ty: Ty,
    pub card: Card,
}

#[derive(Debug)]
pub(super) struct Msg {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl Msg {
    pub(super) fn field(&self, num: u32) -> Option<&Field> {
        self.fields.iter().find(|f| f.num == num)
    }
}

const fn o(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        card: Card::Omit,
    }
}

const fn k(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        card: Card::Keep,
    }
}

const fn r(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        card: Card::Repeated,
    }
}

/// The top-level kinds decoded from protobuf: (apiVersion, kind, message).
/// `DeleteOptions` is sent under whichever group the client addresses.
pub(super) const KINDS: &[(&str, &str, &Msg)] = &[
    ("v1", "Namespace", &NAMESPACE),
    ("v1", "ConfigMap", &CONFIG_MAP),
    ("v1", "Secret", &SECRET),
    ("v1", "Service", &SERVICE),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("autoscaling/v1", "Scale", &SCALE),
    ("batch/v1", "Job", &JOB),
    ("batch/v1", "CronJob", &CRON_JOB),
    ("*", "DeleteOptions", &DELETE_OPTIONS),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(msg: &'static Msg, seen: &mut Vec<&'static str>) {
        if seen.contains(&msg.name) {
            return;
        }
        seen.push(msg.name);
        for (i, f) in msg.fields.iter().enumerate() {
            assert!(
                msg.fields[i + 1..].iter().all(|g| g.num != f.num),
                "{} lists field {} twice",
                msg.name,
                f.num
            );
            if let Ty::Msg(m) | Ty::Inline(m) = f.ty {
                visit(m, seen);
            }
        }
    }

    #[test]
    fn field_numbers_are_unique_in_every_message() {
        let mut seen = Vec::new();
        for (_, _, msg) in KINDS {
            visit(msg, &mut seen);
        }
        assert!(seen.len() > 40, "walked only {} messages", seen.len());
    }
}
