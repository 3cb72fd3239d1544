//! meta/v1: ObjectMeta and the messages every kind shares.

use super::Msg;
use super::Ty::{Bool, FieldsV1, Int, Msg as M, Str, StrMap, Time};
use super::{k, o, r};

pub(super) static OBJECT_META: Msg = Msg {
    name: "meta.v1.ObjectMeta",
    fields: &[
        o(1, "name", Str),
        o(2, "generateName", Str),
        o(3, "namespace", Str),
        o(4, "selfLink", Str),
        o(5, "uid", Str),
        o(6, "resourceVersion", Str),
        o(7, "generation", Int),
        o(8, "creationTimestamp", Time),
        k(9, "deletionTimestamp", Time),
        k(10, "deletionGracePeriodSeconds", Int),
        o(11, "labels", StrMap),
        o(12, "annotations", StrMap),
        r(13, "ownerReferences", M(&OWNER_REFERENCE)),
        r(14, "finalizers", Str),
        r(17, "managedFields", M(&MANAGED_FIELDS_ENTRY)),
    ],
};

pub(super) static OWNER_REFERENCE: Msg = Msg {
    name: "meta.v1.OwnerReference",
    fields: &[
        k(5, "apiVersion", Str),
        k(1, "kind", Str),
        k(3, "name", Str),
        k(4, "uid", Str),
        k(6, "controller", Bool),
        k(7, "blockOwnerDeletion", Bool),
    ],
};

pub(super) static MANAGED_FIELDS_ENTRY: Msg = Msg {
    name: "meta.v1.ManagedFieldsEntry",
    fields: &[
        o(1, "manager", Str),
        o(2, "operation", Str),
        o(3, "apiVersion", Str),
        k(4, "time", Time),
        o(6, "fieldsType", Str),
        k(7, "fieldsV1", FieldsV1),
        o(8, "subresource", Str),
    ],
};

pub(super) static LABEL_SELECTOR: Msg = Msg {
    name: "meta.v1.LabelSelector",
    fields: &[
        o(1, "matchLabels", StrMap),
        r(2, "matchExpressions", M(&LABEL_SELECTOR_REQUIREMENT)),
    ],
};

pub(super) static LABEL_SELECTOR_REQUIREMENT: Msg = Msg {
    name: "meta.v1.LabelSelectorRequirement",
    fields: &[k(1, "key", Str), k(2, "operator", Str), r(3, "values", Str)],
};

pub(super) static DELETE_OPTIONS: Msg = Msg {
    name: "meta.v1.DeleteOptions",
    fields: &[
        k(1, "gracePeriodSeconds", Int),
        k(2, "preconditions", M(&PRECONDITIONS)),
        k(3, "orphanDependents", Bool),
        k(4, "propagationPolicy", Str),
        r(5, "dryRun", Str),
        k(6, "ignoreStoreReadErrorWithClusterBreakingPotential", Bool),
    ],
};

pub(super) static PRECONDITIONS: Msg = Msg {
    name: "meta.v1.Preconditions",
    fields: &[k(1, "uid", Str), k(2, "resourceVersion", Str)],
};
