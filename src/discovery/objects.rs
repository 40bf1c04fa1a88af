//! The few fields of Kubernetes objects that discovery reads. The daemon
//! keeps every EndpointSlice of every cluster between events, so what is
//! kept is small: boxed strings, and a pod's kind as a word.

use serde::Deserialize;

use super::decode::null_as_empty;

#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct List<T> {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub items: Vec<T>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub metadata: ListMeta,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListMeta {
    #[serde(rename = "continue", default)]
    pub continue_token: Option<String>,
    /// Where a watch of this list starts.
    #[serde(rename = "resourceVersion", default)]
    pub resource_version: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Node {
    pub metadata: ObjectMeta,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct Endpoints {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub subsets: Vec<Subset>,
}

#[derive(Debug, Deserialize)]
pub struct Subset {
    /// Ready addresses only; `notReadyAddresses` is deliberately not read.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub addresses: Vec<Address>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub node_name: Option<Box<str>>,
    pub target_ref: Option<ObjectRef>,
}

#[derive(Debug, Deserialize)]
pub struct ObjectRef {
    pub kind: Option<Kind>,
    pub name: Box<str>,
    pub namespace: Option<Box<str>>,
    #[serde(default)]
    pub uid: Option<Box<str>>,
}

/// What an endpoint points to; only pods are node-exporter targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Kind {
    Pod,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub port: u16,
}

/// A `discovery.k8s.io/v1` EndpointSlice: a service has one or more.
#[derive(Debug, Deserialize)]
pub struct EndpointSlice {
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub endpoints: Vec<SliceEndpoint>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<SlicePort>,
}

impl EndpointSlice {
    /// Without the spare room decoding left: the daemon keeps every slice
    /// of every cluster between events.
    pub fn compact(mut self) -> EndpointSlice {
        self.endpoints.shrink_to_fit();
        self.ports.shrink_to_fit();
        self
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub conditions: Conditions,
    pub node_name: Option<Box<str>>,
    pub target_ref: Option<ObjectRef>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Conditions {
    /// Unset means ready (the API's own rule).
    pub ready: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<u16>,
}

/// The body of an error answer.
#[derive(Debug, Deserialize)]
pub struct Status {
    pub message: Option<String>,
}
