//! apps/v1 Deployment, autoscaling/v1 Scale, batch/v1 Job and CronJob.

use super::Msg;
use super::Ty::{Bool, Int, IntOrString, Msg as M, Str};
use super::core_kinds::EMPTY_STATUS;
use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::pod::POD_TEMPLATE_SPEC;
use super::{k, o};

pub(super) static DEPLOYMENT: Msg = Msg {
    name: "apps.v1.Deployment",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&DEPLOYMENT_SPEC)),
        // Status is the controller's; a client's create sends it empty.
        k(3, "status", M(&DEPLOYMENT_STATUS)),
    ],
};

pub(super) static DEPLOYMENT_SPEC: Msg = Msg {
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

pub(super) static DEPLOYMENT_STRATEGY: Msg = Msg {
    name: "apps.v1.DeploymentStrategy",
    fields: &[
        o(1, "type", Str),
        k(2, "rollingUpdate", M(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
};

pub(super) static ROLLING_UPDATE_DEPLOYMENT: Msg = Msg {
    name: "apps.v1.RollingUpdateDeployment",
    fields: &[
        k(1, "maxUnavailable", IntOrString),
        k(2, "maxSurge", IntOrString),
    ],
};

pub(super) static DEPLOYMENT_STATUS: Msg = Msg {
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

pub(super) static SCALE: Msg = Msg {
    name: "autoscaling.v1.Scale",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&SCALE_SPEC)),
        k(3, "status", M(&SCALE_STATUS)),
    ],
};

pub(super) static SCALE_SPEC: Msg = Msg {
    name: "autoscaling.v1.ScaleSpec",
    fields: &[o(1, "replicas", Int)],
};

pub(super) static SCALE_STATUS: Msg = Msg {
    name: "autoscaling.v1.ScaleStatus",
    fields: &[k(1, "replicas", Int), o(2, "selector", Str)],
};

// batch/v1

pub(super) static JOB: Msg = Msg {
    name: "batch.v1.Job",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&JOB_SPEC)),
        k(3, "status", M(&JOB_STATUS)),
    ],
};

pub(super) static JOB_SPEC: Msg = Msg {
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

pub(super) static CRON_JOB: Msg = Msg {
    name: "batch.v1.CronJob",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&CRON_JOB_SPEC)),
        k(3, "status", M(&EMPTY_STATUS)),
    ],
};

pub(super) static CRON_JOB_SPEC: Msg = Msg {
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

pub(super) static JOB_TEMPLATE_SPEC: Msg = Msg {
    name: "batch.v1.JobTemplateSpec",
    fields: &[
        k(1, "metadata", M(&OBJECT_META)),
        k(2, "spec", M(&JOB_SPEC)),
    ],
};

pub(super) static JOB_STATUS: Msg = Msg {
    name: "batch.v1.JobStatus",
    // The non-pointer counters arrive as zeros; the rest is the controller's.
    fields: &[
        o(4, "active", Int),
        o(5, "succeeded", Int),
        o(6, "failed", Int),
        o(7, "completedIndexes", Str),
    ],
};
