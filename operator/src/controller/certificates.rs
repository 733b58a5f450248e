//! A cluster's certificates, kept in Secrets the cluster owns: two authorities (peer and client, so a client
//! certificate can never act as a peer) and the leaves they sign. Missing ones are created and leaves renewed
//! two thirds into their life; etcd reads its certificate files again on each new connection, and the kubelet
//! refreshes the mounted Secret, so a renewal restarts nothing. An authority that cannot be read is never
//! replaced on the operator's own: every member trusts it. A cluster with `spec.tls.secrets` takes the
//! user's Secrets instead (`user_certificates`).

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_op_api::v1::EtcdCluster;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tracing::info;

use super::Context;
use super::error::Error;
use super::model::{CertificateLife, Transport};
use super::resources::{CertificateSecret, certificate_secret, secret_text};
use crate::etcd::ClientTls;
use crate::pki::{self, KeyedCertificate, LeafRequest, Usage, Validity};

const CERT: &str = "tls.crt";
const KEY: &str = "tls.key";
const CA: &str = "ca.crt";

/// What the rest of the reconcile needs of the certificates.
#[derive(Clone, Debug, Default)]
pub struct Certificates {
    /// How the operator reaches members whose client port speaks TLS.
    pub operator_tls: Option<ClientTls>,
    /// Every certificate's life, for status, conditions and metrics.
    pub lives: Vec<CertificateLife>,
}

/// The lifetime of the leaves this cluster's spec asks for.
pub fn leaf_lifetime(ec: &EtcdCluster) -> Result<Duration, Error> {
    match ec.spec.tls.as_ref().and_then(|t| t.certificate_lifetime.as_deref()) {
        None => Ok(pki::DEFAULT_LEAF_LIFETIME),
        Some(text) => pki::parse_lifetime(text).ok_or_else(|| {
            Error::InvalidSpec(format!("spec.tls.certificateLifetime {text:?} is not a number followed by m, h or d"))
        }),
    }
}

/// `client_ips` are the client Service's cluster IPs, which the serving certificate names too.
pub async fn ensure(
    ctx: &Context,
    ec: &EtcdCluster,
    transport: Transport,
    client_ips: &[String],
    now: i64,
) -> Result<Certificates, Error> {
    if !transport.any_tls() {
        return Ok(Certificates::default());
    }
    if let Some(secrets) = ec.spec.tls.as_ref().and_then(|tls| tls.secrets.as_ref()) {
        return super::user_certificates::load(ctx, ec, secrets, transport, now).await;
    }
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let cluster = ec.name_any();
    let store = Store { api: Api::namespaced(ctx.client.clone(), &namespace), ec, namespace: namespace.clone(), now };
    let lifetime = leaf_lifetime(ec)?;
    let mut member_names = pki::member_names(&cluster, &namespace, &ctx.config.cluster_domain);
    member_names.extend(client_ips.iter().cloned());
    let member = |common_name: &str| LeafRequest {
        common_name: common_name.to_string(),
        subject_alt_names: member_names.clone(),
        usage: Usage::ServerAndClient,
    };
    let client = |common_name: &str| LeafRequest {
        common_name: common_name.to_string(),
        subject_alt_names: Vec::new(),
        usage: Usage::Client,
    };
    let mut lives = Vec::new();
    let mut operator_tls = None;
    if transport.peer_tls {
        let authority = store.authority(CertificateSecret::PeerAuthority, &mut lives).await?;
        store.leaf(&authority, CertificateSecret::Peer, &member(&cluster), lifetime, &mut lives).await?;
    }
    if transport.client_tls {
        let authority = store.authority(CertificateSecret::ClientAuthority, &mut lives).await?;
        store.leaf(&authority, CertificateSecret::Server, &member(&cluster), lifetime, &mut lives).await?;
        let operator =
            store.leaf(&authority, CertificateSecret::OperatorClient, &client("etcd-op"), lifetime, &mut lives).await?;
        store
            .leaf(&authority, CertificateSecret::Client, &client(&format!("{cluster}-client")), lifetime, &mut lives)
            .await?;
        operator_tls = Some(ClientTls {
            ca_pem: authority.cert_pem,
            cert_pem: operator.cert_pem,
            key_pem: operator.key_pem,
            server_name: pki::server_name(&cluster, &namespace),
        });
    }
    Ok(Certificates { operator_tls, lives })
}

struct Store<'a> {
    api: Api<Secret>,
    ec: &'a EtcdCluster,
    namespace: String,
    now: i64,
}

impl Store<'_> {
    /// The Secret's data. A Secret of that name that this cluster does not own is someone else's: it is
    /// neither used nor overwritten.
    async fn read(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, Error> {
        let secret = self
            .api
            .get_opt(name)
            .await
            .map_err(|source| Error::KubeRead { what: format!("Secret {}/{name}", self.namespace), source })?;
        let uid = self.ec.uid();
        if let Some(s) = &secret
            && !s.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref())
        {
            return Err(Error::Certificates(format!(
                "Secret {}/{name} exists and does not belong to this EtcdCluster; it is left alone, and the cluster \
                 cannot get its certificates until it is renamed or removed",
                self.namespace
            )));
        }
        Ok(secret.as_ref().map(secret_text))
    }

    async fn write(&self, which: CertificateSecret, exists: bool, data: BTreeMap<String, String>) -> Result<(), Error> {
        let secret = certificate_secret(self.ec, which, data);
        if !exists {
            return create_new(self, secret).await;
        }
        let name = secret.name_any();
        let patch = serde_json::json!({ "stringData": secret.string_data });
        self.api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::KubeWrite { what: format!("Secret {}/{name}", self.namespace), source })?;
        Ok(())
    }

    /// The authority in its Secret, created if the Secret does not exist.
    async fn authority(
        &self,
        which: CertificateSecret,
        lives: &mut Vec<CertificateLife>,
    ) -> Result<KeyedCertificate, Error> {
        let name = which.name(&self.ec.name_any());
        let authority = match self.read(&name).await? {
            Some(data) => {
                let (Some(cert_pem), Some(key_pem)) = (data.get(CERT), data.get(KEY)) else {
                    return Err(Error::Certificates(format!(
                        "Secret {}/{name} holds no {CERT} and {KEY}: the members trust this authority, so it is not replaced; restore it",
                        self.namespace
                    )));
                };
                KeyedCertificate { cert_pem: cert_pem.clone(), key_pem: key_pem.clone() }
            }
            None => {
                let authority = pki::new_authority(&name, self.now, pki::AUTHORITY_LIFETIME)
                    .map_err(|e| Error::Certificates(format!("{name}: {e}")))?;
                info!(cluster = %self.ec.name_any(), namespace = %self.namespace, secret = %name, "created a certificate authority");
                let data = certificate_data(&authority, &authority.cert_pem);
                self.write(which, false, data).await?;
                authority
            }
        };
        let validity = pki::validity(&authority.cert_pem)
            .map_err(|e| Error::Certificates(format!("Secret {}/{name}: {e}", self.namespace)))?;
        lives.push(CertificateLife { secret: name, validity, renews: false });
        Ok(authority)
    }

    /// The leaf in its Secret, issued anew when it is missing, unreadable, from another authority, for other
    /// names, or due for renewal.
    async fn leaf(
        &self,
        authority: &KeyedCertificate,
        which: CertificateSecret,
        request: &LeafRequest,
        lifetime: Duration,
        lives: &mut Vec<CertificateLife>,
    ) -> Result<KeyedCertificate, Error> {
        let name = which.name(&self.ec.name_any());
        let stored = self.read(&name).await?;
        let current = stored.as_ref().and_then(|data| usable_leaf(data, authority, request, self.now));
        let (leaf, validity) = match current {
            Some(found) => found,
            None => {
                let leaf = pki::issue(authority, request, self.now, lifetime)
                    .map_err(|e| Error::Certificates(format!("{name}: {e}")))?;
                let validity =
                    pki::validity(&leaf.cert_pem).map_err(|e| Error::Certificates(format!("{name}: {e}")))?;
                let why = if stored.is_some() { "renewed" } else { "issued" };
                info!(cluster = %self.ec.name_any(), namespace = %self.namespace, secret = %name, not_after = validity.not_after, "{why} a certificate");
                self.write(which, stored.is_some(), certificate_data(&leaf, &authority.cert_pem)).await?;
                (leaf, validity)
            }
        };
        lives.push(CertificateLife { secret: name, validity, renews: true });
        Ok(leaf)
    }
}

/// Creates a certificate's Secret. Another writer's Secret of that name is not taken for ours: the pass ends,
/// and the next one reads it.
async fn create_new(store: &Store<'_>, secret: Secret) -> Result<(), Error> {
    let name = secret.name_any();
    let params = PostParams { field_manager: Some(super::FIELD_MANAGER.into()), ..PostParams::default() };
    match store.api.create(&params, &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::EtcdNotReady {
            step: "IssueCertificate",
            why: format!("Secret {}/{name} was created by someone else meanwhile", store.namespace),
        }),
        Err(source) => Err(Error::KubeWrite { what: format!("create Secret {}/{name}", store.namespace), source }),
    }
}

fn certificate_data(certificate: &KeyedCertificate, authority_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CERT.to_string(), certificate.cert_pem.clone()),
        (KEY.to_string(), certificate.key_pem.clone()),
        (CA.to_string(), authority_pem.to_string()),
    ])
}

/// The stored leaf, if it can stay: complete, from this authority, for these names, and not yet due.
fn usable_leaf(
    data: &BTreeMap<String, String>,
    authority: &KeyedCertificate,
    request: &LeafRequest,
    now: i64,
) -> Option<(KeyedCertificate, Validity)> {
    let (cert_pem, key_pem, ca_pem) = (data.get(CERT)?, data.get(KEY)?, data.get(CA)?);
    if *ca_pem != authority.cert_pem {
        return None;
    }
    let inspected = pki::inspect(cert_pem).ok()?;
    if now >= inspected.validity.renew_at() || inspected.subject_alt_names != request.subject_alt_names {
        return None;
    }
    Some((KeyedCertificate { cert_pem: cert_pem.clone(), key_pem: key_pem.clone() }, inspected.validity))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn request(names: &[&str]) -> LeafRequest {
        LeafRequest {
            common_name: "demo".into(),
            subject_alt_names: names.iter().map(|n| (*n).to_string()).collect(),
            usage: Usage::ServerAndClient,
        }
    }

    #[test]
    fn a_stored_leaf_stays_until_renewal_or_until_it_no_longer_fits() -> Result<(), pki::PkiError> {
        let authority = pki::new_authority("ca", NOW, pki::AUTHORITY_LIFETIME)?;
        let other = pki::new_authority("other", NOW, pki::AUTHORITY_LIFETIME)?;
        let wanted = request(&["*.demo.prod.svc", "localhost"]);
        let leaf = pki::issue(&authority, &wanted, NOW, Duration::from_secs(900))?;
        let data = certificate_data(&leaf, &authority.cert_pem);
        let renew_at = pki::validity(&leaf.cert_pem)?.renew_at();

        assert!(usable_leaf(&data, &authority, &wanted, NOW).is_some(), "fresh");
        assert!(usable_leaf(&data, &authority, &wanted, renew_at - 1).is_some(), "just before renewal");
        assert!(usable_leaf(&data, &authority, &wanted, renew_at).is_none(), "due");
        assert!(usable_leaf(&data, &other, &wanted, NOW).is_none(), "another authority");
        assert!(usable_leaf(&data, &authority, &request(&["localhost"]), NOW).is_none(), "other names");
        let mut incomplete = data.clone();
        incomplete.remove(KEY);
        assert!(usable_leaf(&incomplete, &authority, &wanted, NOW).is_none(), "no key");
        Ok(())
    }
}
