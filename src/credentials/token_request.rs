//! Mints a token for one service account: `POST .../serviceaccounts/NAME/
//! token` with the base credential, through discovery's own client.

use std::time::Duration;

use super::exec_credential::decode_token_request;
use super::{CredentialError, Issued};
use crate::config::cluster::Cluster;
use crate::config::credential_source::TokenRequest;
use crate::discovery::{KubeClient, Permission};

const NEEDS: Permission = Permission {
    verb: "create",
    resource: "serviceaccounts/token",
};

pub async fn request(
    cluster: &Cluster,
    spec: &TokenRequest,
    timeout: Duration,
) -> Result<Issued, CredentialError> {
    let account = format!("{}/{}", spec.namespace, spec.service_account);
    let refused = |source| CredentialError::Request {
        account: account.clone(),
        source,
    };
    let client = KubeClient::new(&with_base(cluster, spec), timeout).map_err(refused)?;
    let path = format!(
        "/api/v1/namespaces/{}/serviceaccounts/{}/token",
        spec.namespace, spec.service_account
    );
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": { "expirationSeconds": spec.expiration.as_secs() },
    });
    let answer: Option<serde_json::Value> =
        client.post(&path, &body, NEEDS).await.map_err(refused)?;
    let answer = answer.ok_or_else(|| CredentialError::Answer {
        account: account.clone(),
        detail: format!(
            "404: there is no service account {account} (create it: `promfed rbac --token-request`)"
        ),
    })?;
    decode_token_request(&answer, jiff::Timestamp::now())
        .map_err(|detail| CredentialError::Answer { account, detail })
}

/// The cluster as seen with its base credential: what may mint.
fn with_base(cluster: &Cluster, spec: &TokenRequest) -> Cluster {
    let mut base = cluster.clone();
    base.auth.token_file = spec.base_token_file.clone();
    base.auth.client_cert = spec.base_client_cert.clone();
    base.auth.source = None;
    base
}
