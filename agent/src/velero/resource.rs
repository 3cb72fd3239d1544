//! `kube::Resource` for the hand-written Velero types: a derive would pull
//! in schema generation that the agent never needs.

/// Implements `kube::Resource` for a namespaced `velero.io/v1` kind whose
/// struct has a `metadata: ObjectMeta` field.
macro_rules! velero_resource {
    ($ty:ident, $kind:literal, $plural:literal) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                super::GROUP.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                super::VERSION.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use velero_resource;

/// `apiVersion` of every Velero object.
pub(crate) fn api_version() -> String {
    format!("{}/{}", super::GROUP, super::VERSION)
}
