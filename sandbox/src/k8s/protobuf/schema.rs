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

use Ty::{
    Bool, BytesMap, FieldsV1, Inline, Int, IntOrString, Msg as M, Quantity, QuantityMap, Str,
    StrMap, Time,
};

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

// meta/v1

static OBJECT_META: Msg = Msg {
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

static OWNER_REFERENCE: Msg = Msg {
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

static MANAGED_FIELDS_ENTRY: Msg = Msg {
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

static LABEL_SELECTOR: Msg = Msg {
    name: "meta.v1.LabelSelector",
    fields: &[
        o(1, "matchLabels", StrMap),
        r(2, "matchExpressions", M(&LABEL_SELECTOR_REQUIREMENT)),
    ],
};

static LABEL_SELECTOR_REQUIREMENT: Msg = Msg {
    name: "meta.v1.LabelSelectorRequirement",
    fields: &[k(1, "key", Str), k(2, "operator", Str), r(3, "values", Str)],
};

static DELETE_OPTIONS: Msg = Msg {
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

static PRECONDITIONS: Msg = Msg {
    name: "meta.v1.Preconditions",
    fields: &[k(1, "uid", Str), k(2, "resourceVersion", Str)],
};

// core/v1: the kinds

static NAMESPACE: Msg = Msg {
    name: "core.v1.Namespace",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&NAMESPACE_SPEC)),
        k(3, "status", M(&NAMESPACE_STATUS)),
    ],
};

static NAMESPACE_SPEC: Msg = Msg {
    name: "core.v1.NamespaceSpec",
    fields: &[r(1, "finalizers", Str)],
};

static NAMESPACE_STATUS: Msg = Msg {
    name: "core.v1.NamespaceStatus",
    // Conditions are the namespace controller's; a client never sends them.
    fields: &[o(1, "phase", Str)],
};

static CONFIG_MAP: Msg = Msg {
    name: "core.v1.ConfigMap",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(4, "immutable", Bool),
        o(2, "data", StrMap),
        o(3, "binaryData", BytesMap),
    ],
};

static SECRET: Msg = Msg {
    name: "core.v1.Secret",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(5, "immutable", Bool),
        o(2, "data", BytesMap),
        o(4, "stringData", StrMap),
        o(3, "type", Str),
    ],
};

static SERVICE: Msg = Msg {
    name: "core.v1.Service",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&SERVICE_SPEC)),
        k(3, "status", M(&SERVICE_STATUS)),
    ],
};

/// A status only controllers fill (CronJob's): empty from a client.
static EMPTY_STATUS: Msg = Msg {
    name: "status (only controllers set its fields)",
    fields: &[],
};

static SERVICE_STATUS: Msg = Msg {
    name: "core.v1.ServiceStatus",
    // The value-typed loadBalancer always arrives, empty from a client;
    // its ingress and the conditions are the controllers' to set.
    fields: &[k(1, "loadBalancer", M(&EMPTY_STATUS))],
};

static JOB_STATUS: Msg = Msg {
    name: "batch.v1.JobStatus",
    // The non-pointer counters arrive as zeros; the rest is the controller's.
    fields: &[
        o(4, "active", Int),
        o(5, "succeeded", Int),
        o(6, "failed", Int),
        o(7, "completedIndexes", Str),
    ],
};

static SERVICE_SPEC: Msg = Msg {
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

static SERVICE_PORT: Msg = Msg {
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

static SESSION_AFFINITY_CONFIG: Msg = Msg {
    name: "core.v1.SessionAffinityConfig",
    fields: &[k(1, "clientIP", M(&CLIENT_IP_CONFIG))],
};

static CLIENT_IP_CONFIG: Msg = Msg {
    name: "core.v1.ClientIPConfig",
    fields: &[k(1, "timeoutSeconds", Int)],
};

static SERVICE_ACCOUNT: Msg = Msg {
    name: "core.v1.ServiceAccount",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        r(2, "secrets", M(&OBJECT_REFERENCE)),
        r(3, "imagePullSecrets", M(&LOCAL_OBJECT_REFERENCE)),
        k(4, "automountServiceAccountToken", Bool),
    ],
};

static OBJECT_REFERENCE: Msg = Msg {
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

static LOCAL_OBJECT_REFERENCE: Msg = Msg {
    name: "core.v1.LocalObjectReference",
    fields: &[o(1, "name", Str)],
};

// core/v1: pod templates

static POD_TEMPLATE_SPEC: Msg = Msg {
    name: "core.v1.PodTemplateSpec",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&POD_SPEC)),
    ],
};

static POD_SPEC: Msg = Msg {
    name: "core.v1.PodSpec",
    fields: &[
        r(1, "volumes", M(&VOLUME)),
        r(20, "initContainers", M(&CONTAINER)),
        r(2, "containers", M(&CONTAINER)),
        o(3, "restartPolicy", Str),
        k(4, "terminationGracePeriodSeconds", Int),
        k(5, "activeDeadlineSeconds", Int),
        o(6, "dnsPolicy", Str),
        o(7, "nodeSelector", StrMap),
        o(8, "serviceAccountName", Str),
        o(9, "serviceAccount", Str),
        k(21, "automountServiceAccountToken", Bool),
        o(10, "nodeName", Str),
        o(11, "hostNetwork", Bool),
        o(12, "hostPID", Bool),
        o(13, "hostIPC", Bool),
        k(27, "shareProcessNamespace", Bool),
        k(14, "securityContext", M(&POD_SECURITY_CONTEXT)),
        r(15, "imagePullSecrets", M(&LOCAL_OBJECT_REFERENCE)),
        o(16, "hostname", Str),
        o(17, "subdomain", Str),
        o(19, "schedulerName", Str),
        r(22, "tolerations", M(&TOLERATION)),
        o(24, "priorityClassName", Str),
        k(25, "priority", Int),
        k(29, "runtimeClassName", Str),
        k(30, "enableServiceLinks", Bool),
        k(31, "preemptionPolicy", Str),
        k(35, "setHostnameAsFQDN", Bool),
        k(37, "hostUsers", Bool),
        k(41, "hostnameOverride", Str),
    ],
};

static CONTAINER: Msg = Msg {
    name: "core.v1.Container",
    fields: &[
        k(1, "name", Str),
        o(2, "image", Str),
        r(3, "command", Str),
        r(4, "args", Str),
        o(5, "workingDir", Str),
        r(6, "ports", M(&CONTAINER_PORT)),
        r(19, "envFrom", M(&ENV_FROM_SOURCE)),
        r(7, "env", M(&ENV_VAR)),
        k(8, "resources", M(&RESOURCE_REQUIREMENTS)),
        k(24, "restartPolicy", Str),
        r(9, "volumeMounts", M(&VOLUME_MOUNT)),
        k(10, "livenessProbe", M(&PROBE)),
        k(11, "readinessProbe", M(&PROBE)),
        k(22, "startupProbe", M(&PROBE)),
        k(12, "lifecycle", M(&LIFECYCLE)),
        o(13, "terminationMessagePath", Str),
        o(20, "terminationMessagePolicy", Str),
        o(14, "imagePullPolicy", Str),
        k(15, "securityContext", M(&SECURITY_CONTEXT)),
        o(16, "stdin", Bool),
        o(17, "stdinOnce", Bool),
        o(18, "tty", Bool),
    ],
};

static CONTAINER_PORT: Msg = Msg {
    name: "core.v1.ContainerPort",
    fields: &[
        o(1, "name", Str),
        o(2, "hostPort", Int),
        k(3, "containerPort", Int),
        o(4, "protocol", Str),
        o(5, "hostIP", Str),
    ],
};

static ENV_VAR: Msg = Msg {
    name: "core.v1.EnvVar",
    fields: &[
        k(1, "name", Str),
        o(2, "value", Str),
        k(3, "valueFrom", M(&ENV_VAR_SOURCE)),
    ],
};

static ENV_VAR_SOURCE: Msg = Msg {
    name: "core.v1.EnvVarSource",
    fields: &[
        k(1, "fieldRef", M(&OBJECT_FIELD_SELECTOR)),
        k(2, "resourceFieldRef", M(&RESOURCE_FIELD_SELECTOR)),
        k(3, "configMapKeyRef", M(&KEY_SELECTOR)),
        k(4, "secretKeyRef", M(&KEY_SELECTOR)),
    ],
};

static OBJECT_FIELD_SELECTOR: Msg = Msg {
    name: "core.v1.ObjectFieldSelector",
    fields: &[o(1, "apiVersion", Str), k(2, "fieldPath", Str)],
};

static RESOURCE_FIELD_SELECTOR: Msg = Msg {
    name: "core.v1.ResourceFieldSelector",
    fields: &[
        o(1, "containerName", Str),
        k(2, "resource", Str),
        o(3, "divisor", Quantity),
    ],
};

/// ConfigMapKeySelector and SecretKeySelector share their layout.
static KEY_SELECTOR: Msg = Msg {
    name: "core.v1.ConfigMapKeySelector",
    fields: &[
        k(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        k(2, "key", Str),
        k(3, "optional", Bool),
    ],
};

static ENV_FROM_SOURCE: Msg = Msg {
    name: "core.v1.EnvFromSource",
    fields: &[
        o(1, "prefix", Str),
        k(2, "configMapRef", M(&ENV_SOURCE)),
        k(3, "secretRef", M(&ENV_SOURCE)),
    ],
};

/// ConfigMapEnvSource and SecretEnvSource share their layout.
static ENV_SOURCE: Msg = Msg {
    name: "core.v1.ConfigMapEnvSource",
    fields: &[
        k(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        k(2, "optional", Bool),
    ],
};

static RESOURCE_REQUIREMENTS: Msg = Msg {
    name: "core.v1.ResourceRequirements",
    fields: &[
        o(1, "limits", QuantityMap),
        o(2, "requests", QuantityMap),
        r(3, "claims", M(&RESOURCE_CLAIM)),
    ],
};

static RESOURCE_CLAIM: Msg = Msg {
    name: "core.v1.ResourceClaim",
    fields: &[k(1, "name", Str), o(2, "request", Str)],
};

static VOLUME_MOUNT: Msg = Msg {
    name: "core.v1.VolumeMount",
    fields: &[
        k(1, "name", Str),
        o(2, "readOnly", Bool),
        k(7, "recursiveReadOnly", Str),
        k(3, "mountPath", Str),
        o(4, "subPath", Str),
        k(5, "mountPropagation", Str),
        o(6, "subPathExpr", Str),
    ],
};

static VOLUME: Msg = Msg {
    name: "core.v1.Volume",
    fields: &[
        k(1, "name", Str),
        k(2, "volumeSource", Inline(&VOLUME_SOURCE)),
    ],
};

static VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.VolumeSource",
    fields: &[
        k(1, "hostPath", M(&HOST_PATH_VOLUME_SOURCE)),
        k(2, "emptyDir", M(&EMPTY_DIR_VOLUME_SOURCE)),
        k(6, "secret", M(&SECRET_VOLUME_SOURCE)),
        k(10, "persistentVolumeClaim", M(&PVC_VOLUME_SOURCE)),
        k(19, "configMap", M(&CONFIG_MAP_VOLUME_SOURCE)),
    ],
};

static HOST_PATH_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.HostPathVolumeSource",
    fields: &[k(1, "path", Str), k(2, "type", Str)],
};

static EMPTY_DIR_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.EmptyDirVolumeSource",
    fields: &[o(1, "medium", Str), k(2, "sizeLimit", Quantity)],
};

static SECRET_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.SecretVolumeSource",
    fields: &[
        o(1, "secretName", Str),
        r(2, "items", M(&KEY_TO_PATH)),
        k(3, "defaultMode", Int),
        k(4, "optional", Bool),
    ],
};

static PVC_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.PersistentVolumeClaimVolumeSource",
    fields: &[k(1, "claimName", Str), o(2, "readOnly", Bool)],
};

static CONFIG_MAP_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.ConfigMapVolumeSource",
    fields: &[
        k(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        r(2, "items", M(&KEY_TO_PATH)),
        k(3, "defaultMode", Int),
        k(4, "optional", Bool),
    ],
};

static KEY_TO_PATH: Msg = Msg {
    name: "core.v1.KeyToPath",
    fields: &[k(1, "key", Str), k(2, "path", Str), k(3, "mode", Int)],
};

static PROBE: Msg = Msg {
    name: "core.v1.Probe",
    fields: &[
        k(1, "handler", Inline(&HANDLER)),
        o(2, "initialDelaySeconds", Int),
        o(3, "timeoutSeconds", Int),
        o(4, "periodSeconds", Int),
        o(5, "successThreshold", Int),
        o(6, "failureThreshold", Int),
        k(7, "terminationGracePeriodSeconds", Int),
    ],
};

/// ProbeHandler, and LifecycleHandler whose field 4 is `sleep` instead of
/// `grpc`; the two are told apart by their containing field.
static HANDLER: Msg = Msg {
    name: "core.v1.ProbeHandler",
    fields: &[
        k(1, "exec", M(&EXEC_ACTION)),
        k(2, "httpGet", M(&HTTP_GET_ACTION)),
        k(3, "tcpSocket", M(&TCP_SOCKET_ACTION)),
        k(4, "grpc", M(&GRPC_ACTION)),
    ],
};

static LIFECYCLE: Msg = Msg {
    name: "core.v1.Lifecycle",
    fields: &[
        k(1, "postStart", M(&LIFECYCLE_HANDLER)),
        k(2, "preStop", M(&LIFECYCLE_HANDLER)),
        k(3, "stopSignal", Str),
    ],
};

static LIFECYCLE_HANDLER: Msg = Msg {
    name: "core.v1.LifecycleHandler",
    fields: &[
        k(1, "exec", M(&EXEC_ACTION)),
        k(2, "httpGet", M(&HTTP_GET_ACTION)),
        k(3, "tcpSocket", M(&TCP_SOCKET_ACTION)),
        k(4, "sleep", M(&SLEEP_ACTION)),
    ],
};

static EXEC_ACTION: Msg = Msg {
    name: "core.v1.ExecAction",
    fields: &[r(1, "command", Str)],
};

static HTTP_GET_ACTION: Msg = Msg {
    name: "core.v1.HTTPGetAction",
    fields: &[
        o(1, "path", Str),
        k(2, "port", IntOrString),
        o(3, "host", Str),
        o(4, "scheme", Str),
        r(5, "httpHeaders", M(&HTTP_HEADER)),
    ],
};

static HTTP_HEADER: Msg = Msg {
    name: "core.v1.HTTPHeader",
    fields: &[k(1, "name", Str), k(2, "value", Str)],
};

static TCP_SOCKET_ACTION: Msg = Msg {
    name: "core.v1.TCPSocketAction",
    fields: &[k(1, "port", IntOrString), o(2, "host", Str)],
};

static GRPC_ACTION: Msg = Msg {
    name: "core.v1.GRPCAction",
    fields: &[k(1, "port", Int), k(2, "service", Str)],
};

static SLEEP_ACTION: Msg = Msg {
    name: "core.v1.SleepAction",
    fields: &[k(1, "seconds", Int)],
};

static SECURITY_CONTEXT: Msg = Msg {
    name: "core.v1.SecurityContext",
    fields: &[
        k(1, "capabilities", M(&CAPABILITIES)),
        k(2, "privileged", Bool),
        k(4, "runAsUser", Int),
        k(8, "runAsGroup", Int),
        k(5, "runAsNonRoot", Bool),
        k(6, "readOnlyRootFilesystem", Bool),
        k(7, "allowPrivilegeEscalation", Bool),
        k(9, "procMount", Str),
        k(11, "seccompProfile", M(&SECCOMP_PROFILE)),
    ],
};

static POD_SECURITY_CONTEXT: Msg = Msg {
    name: "core.v1.PodSecurityContext",
    fields: &[
        k(2, "runAsUser", Int),
        k(6, "runAsGroup", Int),
        k(3, "runAsNonRoot", Bool),
        r(4, "supplementalGroups", Int),
        k(12, "supplementalGroupsPolicy", Str),
        k(5, "fsGroup", Int),
        k(9, "fsGroupChangePolicy", Str),
        k(10, "seccompProfile", M(&SECCOMP_PROFILE)),
        k(13, "seLinuxChangePolicy", Str),
    ],
};

static CAPABILITIES: Msg = Msg {
    name: "core.v1.Capabilities",
    fields: &[r(1, "add", Str), r(2, "drop", Str)],
};

static SECCOMP_PROFILE: Msg = Msg {
    name: "core.v1.SeccompProfile",
    fields: &[k(1, "type", Str), k(2, "localhostProfile", Str)],
};

static TOLERATION: Msg = Msg {
    name: "core.v1.Toleration",
    fields: &[
        o(1, "key", Str),
        o(2, "operator", Str),
        o(3, "value", Str),
        o(4, "effect", Str),
        k(5, "tolerationSeconds", Int),
    ],
};

// apps/v1

static DEPLOYMENT: Msg = Msg {
    name: "apps.v1.Deployment",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&DEPLOYMENT_SPEC)),
        // Status is the controller's; a client's create sends it empty.
        k(3, "status", M(&DEPLOYMENT_STATUS)),
    ],
};

static DEPLOYMENT_SPEC: Msg = Msg {
    name: "apps.v1.DeploymentSpec",
    fields: &[
        k(1, "replicas", Int),
        k(2, "selector", M(&LABEL_SELECTOR)),
        k(3, "template", M(&POD_TEMPLATE_SPEC)),
        k(4, "strategy", M(&DEPLOYMENT_STRATEGY)),
        o(5, "minReadySeconds", Int),
        k(6, "revisionHistoryLimit", Int),
        o(7, "paused", Bool),
        k(9, "progressDeadlineSeconds", Int),
    ],
};

static DEPLOYMENT_STRATEGY: Msg = Msg {
    name: "apps.v1.DeploymentStrategy",
    fields: &[
        o(1, "type", Str),
        k(2, "rollingUpdate", M(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
};

static ROLLING_UPDATE_DEPLOYMENT: Msg = Msg {
    name: "apps.v1.RollingUpdateDeployment",
    fields: &[
        k(1, "maxUnavailable", IntOrString),
        k(2, "maxSurge", IntOrString),
    ],
};

static DEPLOYMENT_STATUS: Msg = Msg {
    name: "apps.v1.DeploymentStatus",
    fields: &[
        o(1, "observedGeneration", Int),
        o(2, "replicas", Int),
        o(3, "updatedReplicas", Int),
        o(7, "readyReplicas", Int),
        o(4, "availableReplicas", Int),
        o(5, "unavailableReplicas", Int),
        k(9, "terminatingReplicas", Int),
        k(8, "collisionCount", Int),
    ],
};

// autoscaling/v1

static SCALE: Msg = Msg {
    name: "autoscaling.v1.Scale",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&SCALE_SPEC)),
        k(3, "status", M(&SCALE_STATUS)),
    ],
};

static SCALE_SPEC: Msg = Msg {
    name: "autoscaling.v1.ScaleSpec",
    fields: &[o(1, "replicas", Int)],
};

static SCALE_STATUS: Msg = Msg {
    name: "autoscaling.v1.ScaleStatus",
    fields: &[k(1, "replicas", Int), o(2, "selector", Str)],
};

// batch/v1

static JOB: Msg = Msg {
    name: "batch.v1.Job",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&JOB_SPEC)),
        k(3, "status", M(&JOB_STATUS)),
    ],
};

static JOB_SPEC: Msg = Msg {
    name: "batch.v1.JobSpec",
    fields: &[
        k(1, "parallelism", Int),
        k(2, "completions", Int),
        k(3, "activeDeadlineSeconds", Int),
        k(7, "backoffLimit", Int),
        k(12, "backoffLimitPerIndex", Int),
        k(13, "maxFailedIndexes", Int),
        k(4, "selector", M(&LABEL_SELECTOR)),
        k(5, "manualSelector", Bool),
        k(6, "template", M(&POD_TEMPLATE_SPEC)),
        k(8, "ttlSecondsAfterFinished", Int),
        k(9, "completionMode", Str),
        k(10, "suspend", Bool),
        k(14, "podReplacementPolicy", Str),
        k(15, "managedBy", Str),
    ],
};

static CRON_JOB: Msg = Msg {
    name: "batch.v1.CronJob",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&CRON_JOB_SPEC)),
        k(3, "status", M(&EMPTY_STATUS)),
    ],
};

static CRON_JOB_SPEC: Msg = Msg {
    name: "batch.v1.CronJobSpec",
    fields: &[
        k(1, "schedule", Str),
        k(8, "timeZone", Str),
        k(2, "startingDeadlineSeconds", Int),
        o(3, "concurrencyPolicy", Str),
        k(4, "suspend", Bool),
        k(5, "jobTemplate", M(&JOB_TEMPLATE_SPEC)),
        k(6, "successfulJobsHistoryLimit", Int),
        k(7, "failedJobsHistoryLimit", Int),
    ],
};

static JOB_TEMPLATE_SPEC: Msg = Msg {
    name: "batch.v1.JobTemplateSpec",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&JOB_SPEC)),
    ],
};

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
