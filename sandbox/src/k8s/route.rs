//! Parsing request paths into what they address, following the API server's
//! URL layout: `/api/v1/...` for the core group, `/apis/<group>/<version>/...`
//! for named groups, then `[namespaces/<ns>/]<resource>[/<name>[/<sub>]]`.

use super::resource::Gvr;

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Healthz,
    CoreVersions,
    Groups,
    Group(String),
    ResourceList { group: String, version: String },
    OpenApiV2,
    OpenApiV3,
    Resource(Target),
    NotFound,
}

/// A resource path: collection when `name` is None.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub gvr: Gvr,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] | ["readyz"] | ["livez"] => Route::Healthz,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3", ..] => Route::OpenApiV3,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group((*group).into()),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, rest) = match rest {
        // `namespaces/<ns>/<resource>...`, unless it is the namespace's own
        // subresource (`namespaces/<ns>/status`, `/finalize`).
        ["namespaces", ns, resource, more @ ..] if !matches!(*resource, "status" | "finalize") => {
            (Some((*ns).to_string()), {
                let mut v = vec![*resource];
                v.extend_from_slice(more);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    let target = |resource: &str, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(Target {
            gvr: Gvr::new(group, version, resource),
            namespace: namespace.clone(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest.as_slice() {
        [] => Route::ResourceList {
            group: group.into(),
            version: version.into(),
        },
        [resource] => target(resource, None, None),
        [resource, name] => target(resource, Some(name), None),
        [resource, name, sub] => target(resource, Some(name), Some(sub)),
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(route: Route) -> Option<Target> {
        match route {
            Route::Resource(t) => Some(t),
            _ => None,
        }
    }

    #[test]
    fn parses_paths() {
        assert_eq!(parse("/api"), Route::CoreVersions);
        assert_eq!(
            parse("/apis/apps/v1"),
            Route::ResourceList {
                group: "apps".into(),
                version: "v1".into()
            }
        );
        let t = target(parse("/api/v1/namespaces/reg/configmaps/cm1"));
        assert_eq!(
            t.as_ref().map(|t| t.gvr.resource.as_str()),
            Some("configmaps")
        );
        assert_eq!(t.as_ref().and_then(|t| t.namespace.as_deref()), Some("reg"));
        let t = target(parse("/api/v1/namespaces/reg"));
        assert_eq!(
            t.as_ref().map(|t| t.gvr.resource.as_str()),
            Some("namespaces")
        );
        assert_eq!(t.as_ref().and_then(|t| t.name.as_deref()), Some("reg"));
        let t = target(parse("/api/v1/namespaces/reg/status"));
        assert_eq!(
            t.as_ref().and_then(|t| t.subresource.as_deref()),
            Some("status")
        );
        let t = target(parse(
            "/apis/velero.io/v1/namespaces/velero/backups/b1/status",
        ));
        assert_eq!(t.as_ref().map(|t| t.gvr.group.as_str()), Some("velero.io"));
        assert_eq!(
            t.as_ref().and_then(|t| t.subresource.as_deref()),
            Some("status")
        );
        let t = target(parse("/apis/velero.io/v1/backups"));
        assert_eq!(t.as_ref().and_then(|t| t.namespace.clone()), None);
    }
}
