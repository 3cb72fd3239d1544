//! core/v1 pod templates: PodSpec, containers, volumes, probes.

use super::Msg;
use super::Ty::{Bool, Inline, Int, IntOrString, Msg as M, Quantity, QuantityMap, Str, StrMap};
use super::core_kinds::LOCAL_OBJECT_REFERENCE;
use super::meta::OBJECT_META;
use super::{k, o, r};

pub(super) static POD_TEMPLATE_SPEC: Msg = Msg {
    name: "core.v1.PodTemplateSpec",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&POD_SPEC)),
    ],
};

pub(super) static POD_SPEC: Msg = Msg {
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

pub(super) static CONTAINER: Msg = Msg {
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

pub(super) static CONTAINER_PORT: Msg = Msg {
    name: "core.v1.ContainerPort",
    fields: &[
        o(1, "name", Str),
        o(2, "hostPort", Int),
        k(3, "containerPort", Int),
        o(4, "protocol", Str),
        o(5, "hostIP", Str),
    ],
};

pub(super) static ENV_VAR: Msg = Msg {
    name: "core.v1.EnvVar",
    fields: &[
        k(1, "name", Str),
        o(2, "value", Str),
        k(3, "valueFrom", M(&ENV_VAR_SOURCE)),
    ],
};

pub(super) static ENV_VAR_SOURCE: Msg = Msg {
    name: "core.v1.EnvVarSource",
    fields: &[
        k(1, "fieldRef", M(&OBJECT_FIELD_SELECTOR)),
        k(2, "resourceFieldRef", M(&RESOURCE_FIELD_SELECTOR)),
        k(3, "configMapKeyRef", M(&KEY_SELECTOR)),
        k(4, "secretKeyRef", M(&KEY_SELECTOR)),
    ],
};

pub(super) static OBJECT_FIELD_SELECTOR: Msg = Msg {
    name: "core.v1.ObjectFieldSelector",
    fields: &[o(1, "apiVersion", Str), k(2, "fieldPath", Str)],
};

pub(super) static RESOURCE_FIELD_SELECTOR: Msg = Msg {
    name: "core.v1.ResourceFieldSelector",
    fields: &[
        o(1, "containerName", Str),
        k(2, "resource", Str),
        o(3, "divisor", Quantity),
    ],
};

/// ConfigMapKeySelector and SecretKeySelector share their layout.
pub(super) static KEY_SELECTOR: Msg = Msg {
    name: "core.v1.ConfigMapKeySelector",
    fields: &[
        k(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        k(2, "key", Str),
        k(3, "optional", Bool),
    ],
};

pub(super) static ENV_FROM_SOURCE: Msg = Msg {
    name: "core.v1.EnvFromSource",
    fields: &[
        o(1, "prefix", Str),
        k(2, "configMapRef", M(&ENV_SOURCE)),
        k(3, "secretRef", M(&ENV_SOURCE)),
    ],
};

/// ConfigMapEnvSource and SecretEnvSource share their layout.
pub(super) static ENV_SOURCE: Msg = Msg {
    name: "core.v1.ConfigMapEnvSource",
    fields: &[
        k(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        k(2, "optional", Bool),
    ],
};

pub(super) static RESOURCE_REQUIREMENTS: Msg = Msg {
    name: "core.v1.ResourceRequirements",
    fields: &[
        o(1, "limits", QuantityMap),
        o(2, "requests", QuantityMap),
        r(3, "claims", M(&RESOURCE_CLAIM)),
    ],
};

pub(super) static RESOURCE_CLAIM: Msg = Msg {
    name: "core.v1.ResourceClaim",
    fields: &[k(1, "name", Str), o(2, "request", Str)],
};

pub(super) static VOLUME_MOUNT: Msg = Msg {
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

pub(super) static VOLUME: Msg = Msg {
    name: "core.v1.Volume",
    fields: &[
        k(1, "name", Str),
        k(2, "volumeSource", Inline(&VOLUME_SOURCE)),
    ],
};

pub(super) static VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.VolumeSource",
    fields: &[
        k(1, "hostPath", M(&HOST_PATH_VOLUME_SOURCE)),
        k(2, "emptyDir", M(&EMPTY_DIR_VOLUME_SOURCE)),
        k(6, "secret", M(&SECRET_VOLUME_SOURCE)),
        k(10, "persistentVolumeClaim", M(&PVC_VOLUME_SOURCE)),
        k(19, "configMap", M(&CONFIG_MAP_VOLUME_SOURCE)),
    ],
};

pub(super) static HOST_PATH_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.HostPathVolumeSource",
    fields: &[k(1, "path", Str), k(2, "type", Str)],
};

pub(super) static EMPTY_DIR_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.EmptyDirVolumeSource",
    fields: &[o(1, "medium", Str), k(2, "sizeLimit", Quantity)],
};

pub(super) static SECRET_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.SecretVolumeSource",
    fields: &[
        o(1, "secretName", Str),
        r(2, "items", M(&KEY_TO_PATH)),
        k(3, "defaultMode", Int),
        k(4, "optional", Bool),
    ],
};

pub(super) static PVC_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.PersistentVolumeClaimVolumeSource",
    fields: &[k(1, "claimName", Str), o(2, "readOnly", Bool)],
};

pub(super) static CONFIG_MAP_VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.ConfigMapVolumeSource",
    fields: &[
        k(1, "localObjectReference", Inline(&LOCAL_OBJECT_REFERENCE)),
        r(2, "items", M(&KEY_TO_PATH)),
        k(3, "defaultMode", Int),
        k(4, "optional", Bool),
    ],
};

pub(super) static KEY_TO_PATH: Msg = Msg {
    name: "core.v1.KeyToPath",
    fields: &[k(1, "key", Str), k(2, "path", Str), k(3, "mode", Int)],
};

pub(super) static PROBE: Msg = Msg {
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
pub(super) static HANDLER: Msg = Msg {
    name: "core.v1.ProbeHandler",
    fields: &[
        k(1, "exec", M(&EXEC_ACTION)),
        k(2, "httpGet", M(&HTTP_GET_ACTION)),
        k(3, "tcpSocket", M(&TCP_SOCKET_ACTION)),
        k(4, "grpc", M(&GRPC_ACTION)),
    ],
};

pub(super) static LIFECYCLE: Msg = Msg {
    name: "core.v1.Lifecycle",
    fields: &[
        k(1, "postStart", M(&LIFECYCLE_HANDLER)),
        k(2, "preStop", M(&LIFECYCLE_HANDLER)),
        k(3, "stopSignal", Str),
    ],
};

pub(super) static LIFECYCLE_HANDLER: Msg = Msg {
    name: "core.v1.LifecycleHandler",
    fields: &[
        k(1, "exec", M(&EXEC_ACTION)),
        k(2, "httpGet", M(&HTTP_GET_ACTION)),
        k(3, "tcpSocket", M(&TCP_SOCKET_ACTION)),
        k(4, "sleep", M(&SLEEP_ACTION)),
    ],
};

pub(super) static EXEC_ACTION: Msg = Msg {
    name: "core.v1.ExecAction",
    fields: &[r(1, "command", Str)],
};

pub(super) static HTTP_GET_ACTION: Msg = Msg {
    name: "core.v1.HTTPGetAction",
    fields: &[
        o(1, "path", Str),
        k(2, "port", IntOrString),
        o(3, "host", Str),
        o(4, "scheme", Str),
        r(5, "httpHeaders", M(&HTTP_HEADER)),
    ],
};

pub(super) static HTTP_HEADER: Msg = Msg {
    name: "core.v1.HTTPHeader",
    fields: &[k(1, "name", Str), k(2, "value", Str)],
};

pub(super) static TCP_SOCKET_ACTION: Msg = Msg {
    name: "core.v1.TCPSocketAction",
    fields: &[k(1, "port", IntOrString), o(2, "host", Str)],
};

pub(super) static GRPC_ACTION: Msg = Msg {
    name: "core.v1.GRPCAction",
    fields: &[k(1, "port", Int), k(2, "service", Str)],
};

pub(super) static SLEEP_ACTION: Msg = Msg {
    name: "core.v1.SleepAction",
    fields: &[k(1, "seconds", Int)],
};

pub(super) static SECURITY_CONTEXT: Msg = Msg {
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

pub(super) static POD_SECURITY_CONTEXT: Msg = Msg {
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

pub(super) static CAPABILITIES: Msg = Msg {
    name: "core.v1.Capabilities",
    fields: &[r(1, "add", Str), r(2, "drop", Str)],
};

pub(super) static SECCOMP_PROFILE: Msg = Msg {
    name: "core.v1.SeccompProfile",
    fields: &[k(1, "type", Str), k(2, "localhostProfile", Str)],
};

pub(super) static TOLERATION: Msg = Msg {
    name: "core.v1.Toleration",
    fields: &[
        o(1, "key", Str),
        o(2, "operator", Str),
        o(3, "value", Str),
        o(4, "effect", Str),
        k(5, "tolerationSeconds", Int),
    ],
};
