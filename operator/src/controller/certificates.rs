//! A cluster's certificates, kept in Secrets the cluster owns: two authorities (peer and client, so a client
//! certificate can never act as a peer) and the leaves they sign. Missing ones are created and leaves renewed
//! two thirds into their life; etcd reads its certificate files again on each new connection, and the kubelet
//! refreshes the mounted Secret, so a renewal restarts nothing. An authority that cannot be read is never
//! replaced on the operator's own: every member trusts it. A cluster with `spec.tls.secrets` takes the
//! user's Secrets instead (`user_certificates`).
//!
//! Rotating the authorities (`spec.tls.authorityRotation`) goes through three changes, each made only once
//! every member runs, ready, on what the one before gave it (`authority_change`, pure):
//! 1. `TrustBoth`: a new authority is made and added to the trust bundle (`ca.crt`) of every Secret; the
//!    bundle is part of the members' template hash, so the planner restarts them one by one, leader last
//!    (etcd reads its trusted authorities only at start).
//! 2. `IssueFromNew`: the new authority signs from now on, so every leaf is issued anew; members read
//!    their certificate on each connection, and both authorities are trusted, so nothing restarts.
//! 3. `DropOld`: after the kubelet has had time to bring the new leaves into the pods, the old authority
//!    leaves the bundle, and the members are restarted once more.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_op_api::v1::{AuthorityRotationStatus, EtcdCluster};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tracing::info;

use super::Context;
use super::error::Error;
use super::model::{CertificateLife, Transport};
use super::observe::Objects;
use super::resources::{CertificateSecret, certificate_secret, folded_hash, secret_text, template_hash};
use super::user_certificates::Pending;
use crate::etcd::ClientTls;
use crate::pki::{self, CA_CERT, KeyedCertificate, LeafRequest, TLS_CERT, TLS_KEY, Usage, Validity};

/// What the rest of the reconcile needs of the certificates.
#[derive(Clone, Debug, Default)]
pub struct Certificates {
    /// How the operator reaches members whose client port speaks TLS.
    pub operator_tls: Option<ClientTls>,
    /// Every certificate's life, for status, conditions and metrics.
    pub lives: Vec<CertificateLife>,
    /// A fingerprint of what members trust once the authorities have been rotated, empty before: part of
    /// the hash members run on (`folded_hash`).
    pub trust: String,
    /// Where the rotation spec.tls.authorityRotation asked for is.
    pub rotation: Option<AuthorityRotationStatus>,
    /// What changed in the authorities during this pass, for Normal events.
    pub changes: Vec<String>,
}

/// The annotation on an authority's Secret naming the spec.tls.authorityRotation value it was made or
/// rotated for.
const ANNOTATION_ROTATION: &str = "etcd.cloud.io/authority-rotation";
/// When the authority's last change was made, in seconds since the Unix epoch.
const ANNOTATION_CHANGED_AT: &str = "etcd.cloud.io/authority-changed-at";
/// The authority that signs once every member trusts it, kept beside the current one meanwhile.
const NEXT_CERT: &str = "next.crt";
const NEXT_KEY: &str = "next.key";
/// How long leaves issued by a new authority are given to reach every pod before the old authority is
/// dropped: the kubelet refreshes a mounted Secret within its sync period (a minute) and its cache's life.
pub const LEAF_PROPAGATION_SECS: i64 = 150;

/// An authority as its Secret keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAuthority {
    /// The authority that signs: `tls.crt` and `tls.key`.
    pub signer: KeyedCertificate,
    /// The authority being rotated in, while members are restarted to trust it.
    pub next: Option<KeyedCertificate>,
    /// What members trust: `ca.crt`, one authority or, during a rotation, two.
    pub bundle: String,
    /// The spec.tls.authorityRotation value it was made or rotated for.
    pub rotation: Option<String>,
    pub changed_at: i64,
}

/// Where an authority is in a rotation, read from what its Secret holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RotationPhase {
    /// One authority, trusted and signing.
    AtRest,
    /// A new authority waits beside the signing one while members restart to trust both.
    TrustBoth,
    /// The new authority signs; both are still trusted.
    IssueFromNew,
}

impl StoredAuthority {
    fn phase(&self) -> RotationPhase {
        if self.next.is_some() {
            RotationPhase::TrustBoth
        } else if pki::split_bundle(&self.bundle).len() > 1 {
            RotationPhase::IssueFromNew
        } else {
            RotationPhase::AtRest
        }
    }
}

/// The next change to an authority, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorityChange {
    Keep,
    TrustBoth,
    IssueFromNew,
    DropOld,
}

impl AuthorityChange {
    fn as_str(self) -> &'static str {
        match self {
            AuthorityChange::Keep => "Keep",
            AuthorityChange::TrustBoth => "TrustBoth",
            AuthorityChange::IssueFromNew => "IssueFromNew",
            AuthorityChange::DropOld => "DropOld",
        }
    }
}

/// The change an authority is due, from what its Secret holds, the rotation the spec asks for, and whether
/// every member runs, ready, on what members trust now: pure.
pub fn authority_change(
    stored: &StoredAuthority,
    requested: Option<&str>,
    members_settled: bool,
    now: i64,
) -> AuthorityChange {
    match stored.phase() {
        RotationPhase::TrustBoth if members_settled => return AuthorityChange::IssueFromNew,
        RotationPhase::IssueFromNew if members_settled && now >= stored.changed_at + LEAF_PROPAGATION_SECS => {
            return AuthorityChange::DropOld;
        }
        RotationPhase::TrustBoth | RotationPhase::IssueFromNew => return AuthorityChange::Keep,
        RotationPhase::AtRest => {}
    }
    match requested {
        Some(wanted) if members_settled && stored.rotation.as_deref() != Some(wanted) => AuthorityChange::TrustBoth,
        _ => AuthorityChange::Keep,
    }
}

/// Where a rotation is, for status: the phase the authorities are in, or `DropOld` until the members
/// restarted without the old authority, then `Done`.
fn rotation_status(
    authorities: &[StoredAuthority],
    requested: Option<&str>,
    members_settled: bool,
) -> Option<AuthorityRotationStatus> {
    let requested = requested?;
    let phase = if authorities.iter().any(|a| a.phase() == RotationPhase::TrustBoth) {
        "TrustBoth"
    } else if authorities.iter().any(|a| a.phase() == RotationPhase::IssueFromNew) {
        "IssueFromNew"
    } else if authorities.iter().all(|a| a.rotation.as_deref() == Some(requested)) {
        if members_settled { "Done" } else { "DropOld" }
    } else {
        return None;
    };
    Some(AuthorityRotationStatus { requested: requested.to_string(), phase: phase.to_string() })
}

/// The fingerprint of what members trust, once any authority has been rotated (see [`folded_hash`]).
fn trust_fingerprint(authorities: &[StoredAuthority]) -> String {
    if authorities.iter().all(|a| a.rotation.is_none()) {
        return String::new();
    }
    let bundles: Vec<&str> = authorities.iter().map(|a| a.bundle.as_str()).collect();
    folded_hash("trust", &bundles.join(""))
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
    objects: &Objects,
    transport: Transport,
    client_ips: &[String],
    now: i64,
) -> Result<Certificates, Error> {
    if !transport.any_tls() {
        return Ok(Certificates::default());
    }
    if let Some(secrets) = ec.spec.tls.as_ref().and_then(|tls| tls.secrets.as_ref()) {
        return super::user_certificates::load(ctx, ec, secrets, transport, now, Pending::Fail).await;
    }
    if let Some(issuer) = ec.spec.tls.as_ref().and_then(|tls| tls.issuer_ref.as_ref()) {
        return super::issued_certificates::ensure(ctx, ec, issuer, transport, client_ips, now).await;
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
    let requested = ec.spec.tls.as_ref().and_then(|t| t.authority_rotation.as_deref());
    let mut which = Vec::new();
    if transport.peer_tls {
        which.push(CertificateSecret::PeerAuthority);
    }
    if transport.client_tls {
        which.push(CertificateSecret::ClientAuthority);
    }
    let mut authorities = Vec::new();
    for &kind in &which {
        authorities.push(store.authority(kind, requested).await?);
    }
    let settled_on = |authorities: &[StoredAuthority]| {
        objects.members_ready_on(ec, &folded_hash(&template_hash(ec), &trust_fingerprint(authorities)))
    };
    let settled = settled_on(&authorities);
    let mut changes = Vec::new();
    for (kind, authority) in which.iter().zip(authorities.iter_mut()) {
        let change = authority_change(authority, requested, settled, now);
        if change != AuthorityChange::Keep {
            store.rotate(*kind, authority, change, requested).await?;
            changes.push(format!("{}: {}", kind.name(&cluster), change.as_str()));
        }
    }
    let trust = trust_fingerprint(&authorities);
    let rotation = rotation_status(&authorities, requested, settled_on(&authorities));

    let mut lives = Vec::new();
    let mut operator_tls = None;
    for (kind, authority) in which.iter().zip(&authorities) {
        let name = kind.name(&cluster);
        let validity = pki::validity(&authority.signer.cert_pem)
            .map_err(|e| Error::Certificates(format!("Secret {namespace}/{name}: {e}")))?;
        lives.push(CertificateLife { secret: name, validity, renews: false });
        if *kind == CertificateSecret::PeerAuthority {
            store.leaf(authority, CertificateSecret::Peer, &member(&cluster), lifetime, &mut lives).await?;
            continue;
        }
        store.leaf(authority, CertificateSecret::Server, &member(&cluster), lifetime, &mut lives).await?;
        let operator =
            store.leaf(authority, CertificateSecret::OperatorClient, &client("etcd-op"), lifetime, &mut lives).await?;
        store
            .leaf(authority, CertificateSecret::Client, &client(&format!("{cluster}-client")), lifetime, &mut lives)
            .await?;
        operator_tls = Some(ClientTls {
            ca_pem: authority.bundle.clone(),
            cert_pem: operator.cert_pem,
            key_pem: operator.key_pem,
            server_name: pki::server_name(&cluster, &namespace),
        });
    }
    Ok(Certificates { operator_tls, lives, trust, rotation, changes })
}

struct Store<'a> {
    api: Api<Secret>,
    ec: &'a EtcdCluster,
    namespace: String,
    now: i64,
}

impl Store<'_> {
    /// The Secret's data (see [`Store::read_with_annotations`]).
    async fn read(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, Error> {
        Ok(self.read_with_annotations(name).await?.map(|(data, _)| data))
    }

    /// The Secret's data and annotations. A Secret of that name that this cluster does not own is someone
    /// else's: it is neither used nor overwritten.
    async fn read_with_annotations(
        &self,
        name: &str,
    ) -> Result<Option<(BTreeMap<String, String>, BTreeMap<String, String>)>, Error> {
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
        Ok(secret.map(|s| (secret_text(&s), s.metadata.annotations.unwrap_or_default())))
    }

    /// Writes the Secret's data and `annotations`; `removed` keys leave its data.
    async fn write(
        &self,
        which: CertificateSecret,
        exists: bool,
        data: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        removed: &[&str],
    ) -> Result<(), Error> {
        let mut secret = certificate_secret(self.ec, which, data);
        if !exists {
            secret.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
            return create_new(self, secret).await;
        }
        let name = secret.name_any();
        let gone: serde_json::Map<String, serde_json::Value> =
            removed.iter().map(|key| ((*key).to_string(), serde_json::Value::Null)).collect();
        let mut patch = serde_json::json!({ "stringData": secret.string_data });
        if !annotations.is_empty() {
            patch["metadata"] = serde_json::json!({ "annotations": annotations });
        }
        if !gone.is_empty() {
            patch["data"] = serde_json::Value::Object(gone);
        }
        self.api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::KubeWrite { what: format!("Secret {}/{name}", self.namespace), source })?;
        Ok(())
    }

    /// The authority in its Secret, created (for the rotation the spec asks for, if any) when the Secret does
    /// not exist.
    async fn authority(&self, which: CertificateSecret, requested: Option<&str>) -> Result<StoredAuthority, Error> {
        let name = which.name(&self.ec.name_any());
        let Some((data, annotations)) = self.read_with_annotations(&name).await? else {
            let authority = pki::new_authority(&name, self.now, pki::AUTHORITY_LIFETIME)
                .map_err(|e| Error::Certificates(format!("{name}: {e}")))?;
            info!(cluster = %self.ec.name_any(), namespace = %self.namespace, secret = %name, "created a certificate authority");
            let stored = StoredAuthority {
                bundle: authority.cert_pem.clone(),
                signer: authority,
                next: None,
                rotation: requested.map(str::to_string),
                changed_at: self.now,
            };
            self.write(which, false, authority_data(&stored), authority_annotations(&stored), &[]).await?;
            return Ok(stored);
        };
        let (Some(cert_pem), Some(key_pem)) = (data.get(TLS_CERT), data.get(TLS_KEY)) else {
            return Err(Error::Certificates(format!(
                "Secret {}/{name} holds no {TLS_CERT} and {TLS_KEY}: the members trust this authority, so it is not replaced; restore it",
                self.namespace
            )));
        };
        let next = match (data.get(NEXT_CERT), data.get(NEXT_KEY)) {
            (Some(cert_pem), Some(key_pem)) => {
                Some(KeyedCertificate { cert_pem: cert_pem.clone(), key_pem: key_pem.clone() })
            }
            _ => None,
        };
        Ok(StoredAuthority {
            signer: KeyedCertificate { cert_pem: cert_pem.clone(), key_pem: key_pem.clone() },
            next,
            bundle: data.get(CA_CERT).cloned().unwrap_or_else(|| cert_pem.clone()),
            rotation: annotations.get(ANNOTATION_ROTATION).cloned(),
            changed_at: annotations.get(ANNOTATION_CHANGED_AT).and_then(|t| t.parse().ok()).unwrap_or(0),
        })
    }

    /// Makes one change of a rotation to the authority and writes it.
    async fn rotate(
        &self,
        which: CertificateSecret,
        authority: &mut StoredAuthority,
        change: AuthorityChange,
        requested: Option<&str>,
    ) -> Result<(), Error> {
        let name = which.name(&self.ec.name_any());
        let mut removed: &[&str] = &[];
        match change {
            AuthorityChange::Keep => return Ok(()),
            AuthorityChange::TrustBoth => {
                let next = pki::new_authority(&name, self.now, pki::AUTHORITY_LIFETIME)
                    .map_err(|e| Error::Certificates(format!("{name}: {e}")))?;
                authority.bundle = format!("{}{}", authority.signer.cert_pem, next.cert_pem);
                authority.next = Some(next);
                authority.rotation = requested.map(str::to_string);
            }
            AuthorityChange::IssueFromNew => {
                if let Some(next) = authority.next.take() {
                    authority.signer = next;
                }
                removed = &[NEXT_CERT, NEXT_KEY];
            }
            AuthorityChange::DropOld => authority.bundle = authority.signer.cert_pem.clone(),
        }
        authority.changed_at = self.now;
        info!(cluster = %self.ec.name_any(), namespace = %self.namespace, secret = %name, change = change.as_str(), "rotating a certificate authority");
        self.write(which, true, authority_data(authority), authority_annotations(authority), removed).await
    }

    /// The leaf in its Secret, issued anew when it is missing, unreadable, not signed by the authority that
    /// signs now, not carrying the current trust bundle, for other names, or due for renewal.
    async fn leaf(
        &self,
        authority: &StoredAuthority,
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
                let leaf = pki::issue(&authority.signer, request, self.now, lifetime)
                    .map_err(|e| Error::Certificates(format!("{name}: {e}")))?;
                let validity =
                    pki::validity(&leaf.cert_pem).map_err(|e| Error::Certificates(format!("{name}: {e}")))?;
                let why = if stored.is_some() { "renewed" } else { "issued" };
                info!(cluster = %self.ec.name_any(), namespace = %self.namespace, secret = %name, not_after = validity.not_after, "{why} a certificate");
                let data = certificate_data(&leaf, &authority.bundle);
                self.write(which, stored.is_some(), data, BTreeMap::new(), &[]).await?;
                (leaf, validity)
            }
        };
        lives.push(CertificateLife { secret: name, validity, renews: true });
        Ok(leaf)
    }
}

fn authority_data(authority: &StoredAuthority) -> BTreeMap<String, String> {
    let mut data = certificate_data(&authority.signer, &authority.bundle);
    if let Some(next) = &authority.next {
        data.insert(NEXT_CERT.to_string(), next.cert_pem.clone());
        data.insert(NEXT_KEY.to_string(), next.key_pem.clone());
    }
    data
}

fn authority_annotations(authority: &StoredAuthority) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([(ANNOTATION_CHANGED_AT.to_string(), authority.changed_at.to_string())]);
    if let Some(rotation) = &authority.rotation {
        annotations.insert(ANNOTATION_ROTATION.to_string(), rotation.clone());
    }
    annotations
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
        (TLS_CERT.to_string(), certificate.cert_pem.clone()),
        (TLS_KEY.to_string(), certificate.key_pem.clone()),
        (CA_CERT.to_string(), authority_pem.to_string()),
    ])
}

/// The stored leaf, if it can stay: complete, signed by the authority that signs now, carrying the current
/// trust bundle, for these names, and not yet due.
fn usable_leaf(
    data: &BTreeMap<String, String>,
    authority: &StoredAuthority,
    request: &LeafRequest,
    now: i64,
) -> Option<(KeyedCertificate, Validity)> {
    let (cert_pem, key_pem, ca_pem) = (data.get(TLS_CERT)?, data.get(TLS_KEY)?, data.get(CA_CERT)?);
    if *ca_pem != authority.bundle || !pki::issued_by(cert_pem, &authority.signer.cert_pem) {
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

    fn stable(authority: &KeyedCertificate, rotation: Option<&str>) -> StoredAuthority {
        StoredAuthority {
            signer: authority.clone(),
            next: None,
            bundle: authority.cert_pem.clone(),
            rotation: rotation.map(str::to_string),
            changed_at: NOW,
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
        let (authority, other) = (stable(&authority, None), stable(&other, None));

        assert!(usable_leaf(&data, &authority, &wanted, NOW).is_some(), "fresh");
        assert!(usable_leaf(&data, &authority, &wanted, renew_at - 1).is_some(), "just before renewal");
        assert!(usable_leaf(&data, &authority, &wanted, renew_at).is_none(), "due");
        assert!(usable_leaf(&data, &other, &wanted, NOW).is_none(), "another authority");
        assert!(usable_leaf(&data, &authority, &request(&["localhost"]), NOW).is_none(), "other names");
        let mut incomplete = data.clone();
        incomplete.remove(TLS_KEY);
        assert!(usable_leaf(&incomplete, &authority, &wanted, NOW).is_none(), "no key");
        Ok(())
    }

    #[test]
    fn a_leaf_is_issued_again_when_the_signer_or_the_trust_bundle_changes() -> Result<(), pki::PkiError> {
        let old = pki::new_authority("demo-peer-ca", NOW, pki::AUTHORITY_LIFETIME)?;
        let new = pki::new_authority("demo-peer-ca", NOW, pki::AUTHORITY_LIFETIME)?;
        let wanted = request(&["*.demo.prod.svc"]);
        let leaf = pki::issue(&old, &wanted, NOW, Duration::from_secs(900))?;
        let before = stable(&old, Some("r1"));
        assert!(usable_leaf(&certificate_data(&leaf, &old.cert_pem), &before, &wanted, NOW).is_some());
        let both = format!("{}{}", old.cert_pem, new.cert_pem);
        let trusting = StoredAuthority { next: Some(new.clone()), bundle: both.clone(), ..before.clone() };
        let data = certificate_data(&leaf, &old.cert_pem);
        assert!(usable_leaf(&data, &trusting, &wanted, NOW).is_none(), "it must carry both authorities");
        let data = certificate_data(&leaf, &both);
        assert!(usable_leaf(&data, &trusting, &wanted, NOW).is_some(), "the old authority still signs");
        let signing = StoredAuthority { signer: new.clone(), next: None, ..trusting };
        assert!(usable_leaf(&data, &signing, &wanted, NOW).is_none(), "signed by the old authority");
        let reissued = pki::issue(&new, &wanted, NOW, Duration::from_secs(900))?;
        assert!(usable_leaf(&certificate_data(&reissued, &both), &signing, &wanted, NOW).is_some());
        Ok(())
    }

    #[test]
    fn a_rotation_moves_one_change_at_a_time_and_only_once_the_members_have_settled() -> Result<(), pki::PkiError> {
        use AuthorityChange::*;
        let old = pki::new_authority("ca", NOW, pki::AUTHORITY_LIFETIME)?;
        let new = pki::new_authority("ca", NOW, pki::AUTHORITY_LIFETIME)?;
        let both = format!("{}{}", old.cert_pem, new.cert_pem);
        let at_rest = stable(&old, Some("r1"));
        let trusting = StoredAuthority {
            next: Some(new.clone()),
            bundle: both.clone(),
            rotation: Some("r2".into()),
            ..at_rest.clone()
        };
        let issuing = StoredAuthority { signer: new.clone(), next: None, ..trusting.clone() };
        let later = NOW + LEAF_PROPAGATION_SECS;
        let cases = [
            (&at_rest, None, true, NOW, Keep, "nothing asked"),
            (&at_rest, Some("r1"), true, NOW, Keep, "already rotated for r1"),
            (&at_rest, Some("r2"), true, NOW, TrustBoth, "a new value starts a rotation"),
            (&at_rest, Some("r2"), false, NOW, Keep, "a rotation starts on a settled cluster only"),
            (&trusting, Some("r2"), false, later, Keep, "members still restart onto both"),
            (&trusting, Some("r2"), true, NOW, IssueFromNew, "every member trusts both"),
            (&trusting, Some("r3"), true, NOW, IssueFromNew, "a newer value waits for this rotation"),
            (&issuing, Some("r2"), true, later - 1, Keep, "the new leaves may not be in the pods yet"),
            (&issuing, Some("r2"), false, later, Keep, "a member is not ready"),
            (&issuing, Some("r2"), true, later, DropOld, "the new leaves had time to arrive"),
            (&issuing, None, true, later, DropOld, "a rotation under way finishes when the field is removed"),
        ];
        for (stored, requested, settled, now, expected, why) in cases {
            assert_eq!(authority_change(stored, requested, settled, now), expected, "{why}");
        }
        let dropped = StoredAuthority { bundle: new.cert_pem.clone(), ..issuing.clone() };
        let status = |a: &StoredAuthority, settled| {
            rotation_status(std::slice::from_ref(a), Some("r2"), settled).map(|s| s.phase)
        };
        assert_eq!(status(&trusting, true).as_deref(), Some("TrustBoth"));
        assert_eq!(status(&issuing, true).as_deref(), Some("IssueFromNew"));
        assert_eq!(status(&dropped, false).as_deref(), Some("DropOld"));
        assert_eq!(status(&dropped, true).as_deref(), Some("Done"));
        assert_eq!(status(&at_rest, true), None, "r1 is not the rotation asked for");
        assert_eq!(trust_fingerprint(&[stable(&old, None)]), "", "members from before rotations keep their hash");
        assert_ne!(
            trust_fingerprint(std::slice::from_ref(&trusting)),
            trust_fingerprint(&[dropped]),
            "dropping the old restarts"
        );
        assert_eq!(
            trust_fingerprint(std::slice::from_ref(&trusting)),
            trust_fingerprint(&[issuing]),
            "issuing restarts nothing"
        );
        Ok(())
    }
}
