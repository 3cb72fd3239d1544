//! core/v1 kinds (Namespace, ConfigMap, Secret, Service, ServiceAccount)
//! and their parts.

use super::Msg;
use super::Ty::{Bool, BytesMap, Int, IntOrString, Msg as M, Str, StrMap};
use super::meta::OBJECT_META;
use super::{k, o, r};

pub(super) static NAMESPACE: Msg = Msg {
    name: "core.v1.Namespace",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&NAMESPACE_SPEC)),
        k(3, "status", M(&NAMESPACE_STATUS)),
    ],
};

pub(super) static NAMESPACE_SPEC: Msg = Msg {
    name: "core.v1.NamespaceSpec",
    fields: &[r(1, "finalizers", Str)],
};

pub(super) static NAMESPACE_STATUS: Msg = Msg {
    name: "core.v1.NamespaceStatus",
    // Conditions are the namespace controller's; a client never sends them.
    fields: &[o(1, "phase", Str)],
};

pub(super) static CONFIG_MAP: Msg = Msg {
    name: "core.v1.ConfigMap",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(4, "immutable", Bool),
        o(2, "data", StrMap),
        o(3, "binaryData", BytesMap),
    ],
};

pub(super) static SECRET: Msg = Msg {
    name: "core.v1.Secret",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(5, "immutable", Bool),
        o(2, "data", BytesMap),
        o(4, "stringData", StrMap),
        o(3, "type", Str),
    ],
};

pub(super) static SERVICE: Msg = Msg {
    name: "core.v1.Service",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&SERVICE_SPEC)),
        k(3, "status", M(&SERVICE_STATUS)),
    ],
};

/// A status only controllers fill (CronJob's): empty from a client.
pub(super) static EMPTY_STATUS: Msg = Msg {
    name: "status (only controllers set its fields)",
    fields: &[],
};

pub(super) static SERVICE_STATUS: Msg = Msg {
    name: "core.v1.ServiceStatus",
    // The value-typed loadBalancer always arrives, empty from a client;
    // its ingress and the conditions are the controllers' to set.
    fields: &[k(1, "loadBalancer", M(&EMPTY_STATUS))],
};

pub(super) static SERVICE_SPEC: Msg = Msg {
    name: "core.v1.ServiceSpec",
    fields: &[
        r(1, "ports", M(&SERVICE_PORT)),
        o(2, "selector", StrMap),
        o(3, "clusterIP", Str),
        r(18, "clusterIPs", Str),
        o(4, "type", Str),
        r(5, "externalIPs", Str),
        o(7, "sessionAffinity", Str),
        o(8, "loadBalancerIP", Str),
        r(9, "loadBalancerSourceRanges", Str),
        o(10, "externalName", Str),
        o(11, "externalTrafficPolicy", Str),
        o(12, "healthCheckNodePort", Int),
        o(13, "publishNotReadyAddresses", Bool),
        k(14, "sessionAffinityConfig", M(&SESSION_AFFINITY_CONFIG)),
        r(19, "ipFamilies", Str),
        k(17, "ipFamilyPolicy", Str),
        k(20, "allocateLoadBalancerNodePorts", Bool),
        k(21, "loadBalancerClass", Str),
        k(22, "internalTrafficPolicy", Str),
        k(23, "trafficDistribution", Str),
    ],
};

pub(super) static SERVICE_PORT: Msg = Msg {
    name: "core.v1.ServicePort",
    fields: &[
        o(1, "name", Str),
        o(2, "protocol", Str),
        k(6, "appProtocol", Str),
        k(3, "port", Int),
        o(4, "targetPort", IntOrString),
        o(5, "nodePort", Int),
    ],
};

pub(super) static SESSION_AFFINITY_CONFIG: Msg = Msg {
    name: "core.v1.SessionAffinityConfig",
    fields: &[k(1, "clientIP", M(&CLIENT_IP_CONFIG))],
};

pub(super) static CLIENT_IP_CONFIG: Msg = Msg {
    name: "core.v1.ClientIPConfig",
    fields: &[k(1, "timeoutSeconds", Int)],
};

pub(super) static SERVICE_ACCOUNT: Msg = Msg {
    name: "core.v1.ServiceAccount",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        r(2, "secrets", M(&OBJECT_REFERENCE)),
        r(3, "imagePullSecrets", M(&LOCAL_OBJECT_REFERENCE)),
        k(4, "automountServiceAccountToken", Bool),
    ],
};

pub(super) static OBJECT_REFERENCE: Msg = Msg {
    name: "core.v1.ObjectReference",
    fields: &[
        o(1, "kind", Str),
        o(2, "namespace", Str),
        o(3, "name", Str),
        o(4, "uid", Str),
        o(5, "apiVersion", Str),
        o(6, "resourceVersion", Str),
        o(7, "fieldPath", Str),
    ],
};

pub(super) static LOCAL_OBJECT_REFERENCE: Msg = Msg {
    name: "core.v1.LocalObjectReference",
    fields: &[o(1, "name", Str)],
};
