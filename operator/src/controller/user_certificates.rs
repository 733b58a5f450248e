//! Certificates from Secrets the user manages (`spec.tls.secrets`): read, checked and never written. The
//! same check runs in the webhook, so a Secret that cannot serve is refused before the cluster exists, and
//! in the controller, so one that changes for the worse later is reported as `CertificatesFailed`.

use std::collections::BTreeMap;

use etcd_op_api::v1::{EtcdCluster, TlsSecrets};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::Context;
use super::error::Error;
use super::model::{CertificateLife, Transport};
use super::resources::secret_text;
use crate::etcd::ClientTls;
use crate::pki::{self, CA_CERT, TLS_CERT, TLS_KEY, Validity};

use super::certificates::Certificates;

/// What a user's Secret is for, which decides the names its certificate must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Peer,
    Server,
    Operator,
}

impl Purpose {
    pub fn field(self) -> &'static str {
        match self {
            Purpose::Peer => "spec.tls.secrets.peer",
            Purpose::Server => "spec.tls.secrets.server",
            Purpose::Operator => "spec.tls.secrets.operator",
        }
    }

    /// Peers dial each other at `<member>.<cluster>.<namespace>.svc`, and members come and go, so only the
    /// wildcard covers them all; the operator checks the client port against the client Service's name.
    pub fn required_names(self, cluster: &str, namespace: &str) -> Vec<String> {
        let members = format!("*.{cluster}.{namespace}.svc");
        match self {
            Purpose::Peer => vec![members],
            Purpose::Server => vec![members, pki::server_name(cluster, namespace)],
            Purpose::Operator => Vec::new(),
        }
    }
}

/// The user's Secrets a cluster with `transport` reads, by purpose.
pub fn wanted(secrets: &TlsSecrets, transport: Transport) -> Vec<(Purpose, String)> {
    let mut wanted = Vec::new();
    if transport.peer_tls
        && let Some(peer) = &secrets.peer
    {
        wanted.push((Purpose::Peer, peer.clone()));
    }
    if transport.client_tls {
        wanted.extend(secrets.server.clone().map(|s| (Purpose::Server, s)));
        wanted.extend(secrets.operator.clone().map(|s| (Purpose::Operator, s)));
    }
    wanted
}

/// A user's certificate that can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usable {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub validity: Validity,
}

/// The keys of a certificate Secret that are absent or empty.
fn missing_keys(data: &BTreeMap<String, String>) -> Vec<&'static str> {
    [TLS_CERT, TLS_KEY, CA_CERT].into_iter().filter(|key| data.get(*key).is_none_or(String::is_empty)).collect()
}

/// Checks a Secret's data for `purpose` at `now`: pure, shared by the webhook and the controller. The error
/// says what is wrong in words a user can act on.
pub fn check(
    purpose: Purpose,
    secret: &str,
    data: Option<&BTreeMap<String, String>>,
    cluster: &str,
    namespace: &str,
    now: i64,
) -> Result<Usable, String> {
    let place = format!("{}: Secret {namespace}/{secret}", purpose.field());
    let Some(data) = data else { return Err(format!("{place} does not exist")) };
    let missing = missing_keys(data);
    if !missing.is_empty() {
        return Err(format!("{place} has no {}", missing.join(", ")));
    }
    let (cert_pem, key_pem, ca_pem) = (&data[TLS_CERT], &data[TLS_KEY], &data[CA_CERT]);
    let inspected = pki::inspect(cert_pem).map_err(|e| format!("{place}: {TLS_CERT}: {e}"))?;
    pki::inspect(ca_pem).map_err(|e| format!("{place}: {CA_CERT}: {e}"))?;
    if inspected.validity.not_after <= now {
        return Err(format!("{place}: the certificate expired (notAfter {})", inspected.validity.not_after));
    }
    let uncovered = pki::uncovered(&inspected.subject_alt_names, &purpose.required_names(cluster, namespace));
    if !uncovered.is_empty() {
        return Err(format!(
            "{place}: the certificate does not name {} (it names {})",
            uncovered.join(", "),
            if inspected.subject_alt_names.is_empty() {
                "nothing".to_string()
            } else {
                inspected.subject_alt_names.join(", ")
            }
        ));
    }
    Ok(Usable {
        cert_pem: cert_pem.clone(),
        key_pem: key_pem.clone(),
        ca_pem: ca_pem.clone(),
        validity: inspected.validity,
    })
}

/// What a Secret that does not exist yet, or lacks a key, means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The user's own Secret: a mistake to report.
    Fail,
    /// cert-manager has not issued it yet: the pass waits.
    Wait,
}

/// Reads and checks the Secrets; the operator's client certificate comes from the `operator` one.
pub async fn load(
    ctx: &Context,
    ec: &EtcdCluster,
    secrets: &TlsSecrets,
    transport: Transport,
    now: i64,
    pending: Pending,
) -> Result<Certificates, Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let cluster = ec.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut certificates = Certificates::default();
    let (mut server_ca, mut operator) = (None, None);
    for (purpose, name) in wanted(secrets, transport) {
        let secret = api
            .get_opt(&name)
            .await
            .map_err(|source| Error::KubeRead { what: format!("Secret {namespace}/{name}"), source })?;
        let data = secret.as_ref().map(secret_text);
        let issued = data.as_ref().is_some_and(|d| missing_keys(d).is_empty());
        if pending == Pending::Wait && !issued {
            return Err(Error::EtcdNotReady {
                step: "IssueCertificate",
                why: format!("waiting for cert-manager to issue Secret {namespace}/{name}"),
            });
        }
        let usable = check(purpose, &name, data.as_ref(), &cluster, &namespace, now).map_err(Error::Certificates)?;
        certificates.lives.push(CertificateLife { secret: name, validity: usable.validity, renews: false });
        match purpose {
            Purpose::Server => server_ca = Some(usable.ca_pem),
            Purpose::Operator => operator = Some(usable),
            Purpose::Peer => {}
        }
    }
    // The members' serving certificate is checked against the authority of the server Secret.
    if let (Some(operator), Some(ca_pem)) = (operator, server_ca) {
        certificates.operator_tls = Some(ClientTls {
            ca_pem,
            cert_pem: operator.cert_pem,
            key_pem: operator.key_pem,
            server_name: pki::server_name(&cluster, &namespace),
        });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{KeyedCertificate, LeafRequest, Usage};

    const NOW: i64 = 1_800_000_000;

    fn issued(names: &[&str]) -> Result<(KeyedCertificate, KeyedCertificate), pki::PkiError> {
        let authority = pki::new_authority("user-ca", NOW, pki::AUTHORITY_LIFETIME)?;
        let request = LeafRequest {
            common_name: "demo".into(),
            subject_alt_names: names.iter().map(|n| (*n).to_string()).collect(),
            usage: Usage::ServerAndClient,
        };
        let leaf = pki::issue(&authority, &request, NOW, std::time::Duration::from_secs(86_400))?;
        Ok((authority, leaf))
    }

    fn data(authority: &KeyedCertificate, leaf: &KeyedCertificate) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TLS_CERT.to_string(), leaf.cert_pem.clone()),
            (TLS_KEY.to_string(), leaf.key_pem.clone()),
            (CA_CERT.to_string(), authority.cert_pem.clone()),
        ])
    }

    #[test]
    fn a_certificate_for_the_wildcard_and_the_client_service_serves() -> Result<(), pki::PkiError> {
        let (authority, leaf) = issued(&["*.demo.prod.svc", "demo-client.prod.svc"])?;
        let stored = data(&authority, &leaf);
        let usable = check(Purpose::Server, "mine", Some(&stored), "demo", "prod", NOW);
        assert!(usable.as_ref().is_ok_and(|u| u.ca_pem == authority.cert_pem), "{usable:?}");
        assert!(check(Purpose::Peer, "mine", Some(&stored), "demo", "prod", NOW).is_ok());
        Ok(())
    }

    #[test]
    fn what_is_wrong_is_said_in_words() -> Result<(), pki::PkiError> {
        let refusal = |result: Result<Usable, String>| result.err().unwrap_or_default();
        assert!(refusal(check(Purpose::Peer, "gone", None, "demo", "prod", NOW)).contains("does not exist"));
        let (authority, leaf) = issued(&["*.demo.prod.svc"])?;
        let mut partial = data(&authority, &leaf);
        partial.remove(CA_CERT);
        let message = refusal(check(Purpose::Peer, "mine", Some(&partial), "demo", "prod", NOW));
        assert!(message.contains("spec.tls.secrets.peer") && message.contains("has no ca.crt"), "{message}");
        let stored = data(&authority, &leaf);
        let message = refusal(check(Purpose::Server, "mine", Some(&stored), "demo", "prod", NOW));
        assert!(message.contains("does not name demo-client.prod.svc"), "{message}");
        let message = refusal(check(Purpose::Peer, "mine", Some(&stored), "other", "prod", NOW));
        assert!(message.contains("*.other.prod.svc"), "another cluster's certificate: {message}");
        let message = refusal(check(Purpose::Peer, "mine", Some(&stored), "demo", "prod", NOW + 2 * 86_400));
        assert!(message.contains("expired"), "{message}");
        Ok(())
    }

    #[test]
    fn the_operators_client_certificate_needs_no_names() -> Result<(), pki::PkiError> {
        let (authority, leaf) = issued(&[])?;
        assert!(check(Purpose::Operator, "op", Some(&data(&authority, &leaf)), "demo", "prod", NOW).is_ok());
        Ok(())
    }

    #[test]
    fn only_the_secrets_of_ports_that_speak_tls_are_read() {
        let secrets = TlsSecrets { peer: Some("p".into()), server: Some("s".into()), operator: Some("o".into()) };
        let purposes = |t| wanted(&secrets, t).into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        assert_eq!(purposes(Transport::MUTUAL_TLS), [Purpose::Peer, Purpose::Server, Purpose::Operator]);
        assert_eq!(purposes(Transport { peer_tls: true, client_tls: false }), [Purpose::Peer]);
        assert!(purposes(Transport::PLAINTEXT).is_empty());
    }
}
