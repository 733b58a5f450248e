//! The webhook's serving certificate, from one of two sources:
//! - files (`--webhook-cert-dir`: cert-manager's Secret, mounted), read again when they change, with
//!   cert-manager's CA injector writing the trust bundle into the webhook configuration;
//! - made by the manager: an authority and a certificate kept in one Secret in the manager's namespace, so
//!   every replica serves the same certificate, with the authority written into the webhook configuration
//!   by the manager itself.
//!
//! Either way the certificate in use can be swapped while the server runs (`SwappableCertificate`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::controller::resources::secret_text;
use crate::pki::{self, CA_CERT, KeyedCertificate, LeafRequest, TLS_CERT, TLS_KEY, Usage};

/// The manager's own webhook certificate lives a year and is renewed at two thirds of it; its authority
/// lives ten years.
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
const CA_KEY: &str = "ca.key";

/// The certificate the webhook serves, replaceable while it serves.
#[derive(Debug)]
pub struct SwappableCertificate(RwLock<Arc<CertifiedKey>>);

impl SwappableCertificate {
    pub fn new(pem: &KeyedCertificate) -> Result<Self, String> {
        Ok(Self(RwLock::new(certified_key(pem)?)))
    }

    /// Serves `pem` from the next handshake on.
    pub fn replace(&self, pem: &KeyedCertificate) -> Result<(), String> {
        let key = certified_key(pem)?;
        match self.0.write() {
            Ok(mut current) => *current = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
        Ok(())
    }

    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for SwappableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.0.read() {
            Ok(current) => Some(current.clone()),
            Err(poisoned) => Some(poisoned.into_inner().clone()),
        }
    }
}

fn certified_key(pem: &KeyedCertificate) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(pem.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the serving certificate: {e}"))?;
    if chain.is_empty() {
        return Err("the serving certificate file holds no certificate".to_string());
    }
    let key = PrivateKeyDer::from_pem_slice(pem.key_pem.as_bytes()).map_err(|e| format!("the serving key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("the serving key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Where the manager keeps its own webhook certificate and whom it tells about the authority.
#[derive(Clone)]
pub struct Managed {
    pub client: Client,
    pub namespace: String,
    pub secret: String,
    pub service: String,
    pub configuration: String,
    pub cluster_domain: String,
}

/// What the stored Secret holds, when it can be used as it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Nothing usable: a new authority and certificate are made.
    Unusable,
    /// The authority is good; the certificate is missing, names other names or is due for renewal.
    RenewLeaf {
        authority: KeyedCertificate,
    },
    Current {
        authority_pem: String,
        leaf: KeyedCertificate,
    },
}

/// Judges the stored data at `now`: pure, so renewal is tested without a clock or a cluster.
pub fn judge(data: &BTreeMap<String, String>, names: &[String], now: i64) -> Stored {
    let (Some(ca_cert), Some(ca_key)) = (data.get(CA_CERT), data.get(CA_KEY)) else { return Stored::Unusable };
    match pki::inspect(ca_cert) {
        Ok(ca) if !ca.validity.expiring(now) => {}
        _ => return Stored::Unusable,
    }
    let authority = KeyedCertificate { cert_pem: ca_cert.clone(), key_pem: ca_key.clone() };
    let (Some(cert), Some(key)) = (data.get(TLS_CERT), data.get(TLS_KEY)) else {
        return Stored::RenewLeaf { authority };
    };
    match pki::inspect(cert) {
        Ok(leaf) if now < leaf.validity.renew_at() && leaf.subject_alt_names == names => Stored::Current {
            authority_pem: authority.cert_pem,
            leaf: KeyedCertificate { cert_pem: cert.clone(), key_pem: key.clone() },
        },
        _ => Stored::RenewLeaf { authority },
    }
}

impl Managed {
    fn names(&self) -> Vec<String> {
        pki::service_names(&self.service, &self.namespace, &self.cluster_domain)
    }

    /// The certificate to serve and the authority that signed it, made or renewed in the Secret as needed.
    /// Replicas racing here settle on whichever write the API server took first.
    pub async fn ensure(&self, now: i64) -> Result<(String, KeyedCertificate), String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let place = format!("Secret {}/{}", self.namespace, self.secret);
        let names = self.names();
        for _attempt in 0..3 {
            let existing = secrets.get_opt(&self.secret).await.map_err(|e| format!("reading {place}: {e}"))?;
            let data = existing.as_ref().map(secret_text).unwrap_or_default();
            let (authority, action) = match judge(&data, &names, now) {
                Stored::Current { authority_pem, leaf } => return Ok((authority_pem, leaf)),
                Stored::RenewLeaf { authority } => (authority, "renewed"),
                Stored::Unusable => {
                    let authority = pki::new_authority("etcd-op-webhook-ca", now, pki::AUTHORITY_LIFETIME)
                        .map_err(|e| e.to_string())?;
                    (authority, "created")
                }
            };
            let request = LeafRequest {
                common_name: self.service.clone(),
                subject_alt_names: names.clone(),
                usage: Usage::Server,
            };
            let leaf = pki::issue(&authority, &request, now, LEAF_LIFETIME).map_err(|e| e.to_string())?;
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(self.secret.clone()),
                    namespace: Some(self.namespace.clone()),
                    resource_version: existing.as_ref().and_then(|s| s.metadata.resource_version.clone()),
                    labels: Some(BTreeMap::from([("app.kubernetes.io/name".into(), "etcd-op".into())])),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                string_data: Some(BTreeMap::from([
                    (CA_CERT.into(), authority.cert_pem.clone()),
                    (CA_KEY.into(), authority.key_pem.clone()),
                    (TLS_CERT.into(), leaf.cert_pem.clone()),
                    (TLS_KEY.into(), leaf.key_pem.clone()),
                ])),
                ..Secret::default()
            };
            let written = match existing {
                None => secrets.create(&PostParams::default(), &secret).await.map(drop),
                Some(_) => secrets.replace(&self.secret, &PostParams::default(), &secret).await.map(drop),
            };
            match written {
                Ok(()) => {
                    tracing::info!(secret = %place, action, "webhook serving certificate {action}");
                    return Ok((authority.cert_pem, leaf));
                }
                // Another replica wrote first: use what it wrote.
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => return Err(format!("writing {place}: {e}")),
            }
        }
        Err(format!("{place} kept changing while it was written"))
    }

    /// Writes `authority_pem` as the trust bundle of every webhook in the configuration, where it differs.
    /// A configuration that is not installed is left to whoever installs it: nothing calls the webhook then.
    pub async fn inject(&self, authority_pem: &str) -> Result<bool, String> {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let place = format!("ValidatingWebhookConfiguration {}", self.configuration);
        let Some(configuration) =
            api.get_opt(&self.configuration).await.map_err(|e| format!("reading {place}: {e}"))?
        else {
            return Ok(false);
        };
        let stale: Vec<String> = configuration
            .webhooks
            .unwrap_or_default()
            .into_iter()
            .filter(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(authority_pem.as_bytes()))
            .map(|w| w.name)
            .collect();
        if stale.is_empty() {
            return Ok(true);
        }
        let bundle = serde_json::to_value(ByteString(authority_pem.as_bytes().to_vec()))
            .map_err(|e| format!("encoding the trust bundle: {e}"))?;
        let webhooks: Vec<serde_json::Value> = stale
            .iter()
            .map(|name| serde_json::json!({ "name": name, "clientConfig": { "caBundle": bundle } }))
            .collect();
        let patch = serde_json::json!({ "webhooks": webhooks });
        api.patch(&self.configuration, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .map_err(|e| format!("writing the trust bundle into {place}: {e}"))?;
        tracing::info!(configuration = %self.configuration, webhooks = ?stale, "webhook trust bundle written");
        Ok(true)
    }
}

/// Where the serving certificate comes from.
#[derive(Clone)]
pub enum Source {
    Files(PathBuf),
    Managed(Managed),
}

/// How often the source is looked at again: files change when cert-manager renews them; the manager's own
/// certificate is renewed long before it lapses, and a trust bundle reset by a re-applied configuration is
/// written again within this time.
pub const REFRESH: Duration = Duration::from_secs(300);
pub const REFRESH_FILES: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn names() -> Vec<String> {
        pki::service_names("etcd-op-webhook-service", "etcd-op-system", "cluster.local")
    }

    fn stored(authority: &KeyedCertificate, leaf: Option<&KeyedCertificate>) -> BTreeMap<String, String> {
        let mut data = BTreeMap::from([
            (CA_CERT.to_string(), authority.cert_pem.clone()),
            (CA_KEY.to_string(), authority.key_pem.clone()),
        ]);
        if let Some(leaf) = leaf {
            data.insert(TLS_CERT.into(), leaf.cert_pem.clone());
            data.insert(TLS_KEY.into(), leaf.key_pem.clone());
        }
        data
    }

    fn leaf(authority: &KeyedCertificate, names: Vec<String>, issued: i64) -> Result<KeyedCertificate, pki::PkiError> {
        let request = LeafRequest { common_name: "webhook".into(), subject_alt_names: names, usage: Usage::Server };
        pki::issue(authority, &request, issued, LEAF_LIFETIME)
    }

    #[test]
    fn nothing_stored_means_a_new_authority() {
        assert_eq!(judge(&BTreeMap::new(), &names(), NOW), Stored::Unusable);
        let garbage = BTreeMap::from([(CA_CERT.to_string(), "x".to_string()), (CA_KEY.to_string(), "y".to_string())]);
        assert_eq!(judge(&garbage, &names(), NOW), Stored::Unusable);
    }

    #[test]
    fn a_current_certificate_is_served_as_stored() -> Result<(), pki::PkiError> {
        let authority = pki::new_authority("ca", NOW, pki::AUTHORITY_LIFETIME)?;
        let current = leaf(&authority, names(), NOW)?;
        let judged = judge(&stored(&authority, Some(&current)), &names(), NOW + 3600);
        assert_eq!(judged, Stored::Current { authority_pem: authority.cert_pem.clone(), leaf: current });
        Ok(())
    }

    #[test]
    fn a_due_missing_or_misnamed_certificate_is_renewed_under_the_same_authority() -> Result<(), pki::PkiError> {
        let authority = pki::new_authority("ca", NOW, pki::AUTHORITY_LIFETIME)?;
        let renew = Stored::RenewLeaf { authority: authority.clone() };
        assert_eq!(judge(&stored(&authority, None), &names(), NOW), renew);
        let current = leaf(&authority, names(), NOW)?;
        let due = NOW + (LEAF_LIFETIME.as_secs() as i64) * 2 / 3 + 1;
        assert_eq!(judge(&stored(&authority, Some(&current)), &names(), due), renew);
        let misnamed = leaf(&authority, vec!["elsewhere".into()], NOW)?;
        assert_eq!(judge(&stored(&authority, Some(&misnamed)), &names(), NOW), renew);
        Ok(())
    }

    #[test]
    fn an_expiring_authority_is_replaced() -> Result<(), pki::PkiError> {
        let authority = pki::new_authority("ca", NOW, Duration::from_secs(600))?;
        let current = leaf(&authority, names(), NOW)?;
        assert_eq!(judge(&stored(&authority, Some(&current)), &names(), NOW + 550), Stored::Unusable);
        Ok(())
    }

    #[test]
    fn the_served_certificate_can_be_swapped() -> Result<(), Box<dyn std::error::Error>> {
        let authority = pki::new_authority("ca", NOW, pki::AUTHORITY_LIFETIME)?;
        let first = leaf(&authority, names(), NOW)?;
        let second = leaf(&authority, names(), NOW + 10)?;
        let swappable = Arc::new(SwappableCertificate::new(&first)?);
        let der = |pem: &KeyedCertificate| CertificateDer::from_pem_slice(pem.cert_pem.as_bytes());
        let served = || match swappable.0.read() {
            Ok(key) => key.cert[0].clone(),
            Err(_) => CertificateDer::from(Vec::new()),
        };
        assert_eq!(served(), der(&first)?);
        swappable.replace(&second)?;
        assert_eq!(served(), der(&second)?);
        assert!(swappable.replace(&KeyedCertificate { cert_pem: String::new(), key_pem: String::new() }).is_err());
        assert_eq!(served(), der(&second)?, "a bad certificate leaves the served one in place");
        Ok(())
    }
}
