//! Names an API server returns go into proxy paths (`/api/v1/nodes/<name>/
//! proxy/metrics`): a name such as `../../secrets` would scrape something
//! else. Only names Kubernetes itself allows (DNS-1123) are used.

/// A DNS-1123 subdomain: node and pod names.
pub fn is_subdomain(name: &str) -> bool {
    name.len() <= 253 && !name.is_empty() && name.split('.').all(is_label)
}

/// A DNS-1123 label: namespaces, and each part of a subdomain.
pub fn is_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kubernetes_names_pass() {
        for good in ["node-a", "ip-10-0-0-1.ec2.internal", "a", "0"] {
            assert!(is_subdomain(good), "{good}");
        }
        for bad in [
            "",
            "../../../api/v1/namespaces/kube-system/secrets",
            "Node",
            "a..b",
            "-a",
            "a-",
            "a/b",
            "a%2Fb",
            "a b",
            &"a".repeat(254),
        ] {
            assert!(!is_subdomain(bad), "{bad}");
        }
        assert!(is_label("monitoring") && !is_label("kube.system"));
    }
}
