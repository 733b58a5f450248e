//! Certificate authorities and the certificates they issue to a cluster's members, the operator and users.
//! Issuance uses rcgen; when to renew is a pure function of a certificate's validity, tested without a clock.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Leaf certificates live this long unless `spec.tls.certificateLifetime` says otherwise.
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// A cluster's authorities live ten years; their rotation is a deliberate act, not a renewal.
pub const AUTHORITY_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Certificates are dated this far back (at most a tenth of their life), so a member whose clock is slightly
/// behind accepts them at once.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("reading a certificate: {0}")]
    Read(String),
    #[error("a certificate's validity is outside what can be written: {0}")]
    Time(String),
}

/// The keys of a certificate Secret, in the `kubernetes.io/tls` shape plus the authority that signed it.
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CERT: &str = "ca.crt";

/// A certificate and its private key, in PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// `tls.crt` and `tls.key` in `dir`: a mounted certificate Secret (cert-manager's, for example).
pub fn read_files(dir: &std::path::Path) -> Result<KeyedCertificate, String> {
    let read =
        |file: &str| std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{}: {e}", dir.join(file).display()));
    Ok(KeyedCertificate { cert_pem: read(TLS_CERT)?, key_pem: read(TLS_KEY)? })
}

/// What a leaf certificate is for, which decides its extended key usages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A member's certificate: it serves, and it is also a client, of its peers or (through etcd's gateway)
    /// of its own client port.
    ServerAndClient,
    /// A client's certificate: it can never serve.
    Client,
    /// A server's certificate only (the manager's webhook): it can never act as a client.
    Server,
}

/// A leaf certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRequest {
    pub common_name: String,
    /// DNS names and IP addresses; rcgen tells them apart.
    pub subject_alt_names: Vec<String>,
    pub usage: Usage,
}

/// The span a certificate is valid for, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// When a leaf is renewed: two thirds into its life, so a failed renewal has a third of it to succeed.
    pub fn renew_at(self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }

    /// Less than a sixth of its life is left: renewal should have happened long ago, or (for an authority)
    /// rotation is due.
    pub fn expiring(self, now: i64) -> bool {
        self.not_after - now < (self.not_after - self.not_before) / 6
    }
}

/// A lifetime written as a number and a unit: `m` (minutes), `h` (hours) or `d` (days).
pub fn parse_lifetime(text: &str) -> Option<Duration> {
    let unit = match text.chars().last()? {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let number: u64 = text[..text.len() - 1].parse().ok()?;
    Some(Duration::from_secs(number.checked_mul(unit)?)).filter(|d| !d.is_zero())
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "etcd-op");
    name
}

fn validity_params(params: &mut CertificateParams, now: i64, lifetime: Duration) -> Result<(), PkiError> {
    let at =
        |secs: i64| time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| PkiError::Time(format!("{secs}: {e}")));
    let seconds = |d: Duration| i64::try_from(d.as_secs()).map_err(|e| PkiError::Time(e.to_string()));
    let skew = seconds(CLOCK_SKEW.min(lifetime / 10))?;
    let lifetime = seconds(lifetime)?;
    params.not_before = at(now - skew)?;
    params.not_after = at(now + lifetime)?;
    Ok(())
}

/// A new self-signed certificate authority.
pub fn new_authority(common_name: &str, now: i64, lifetime: Duration) -> Result<KeyedCertificate, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = subject(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity_params(&mut params, now, lifetime)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(KeyedCertificate { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A leaf certificate signed by `authority`.
pub fn issue(
    authority: &KeyedCertificate,
    request: &LeafRequest,
    now: i64,
    lifetime: Duration,
) -> Result<KeyedCertificate, PkiError> {
    let authority_key = KeyPair::from_pem(&authority.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&authority.cert_pem, authority_key)?;
    let mut params = CertificateParams::new(request.subject_alt_names.clone())?;
    params.distinguished_name = subject(&request.common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = match request.usage {
        Usage::ServerAndClient => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity_params(&mut params, now, lifetime)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(KeyedCertificate { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// What a certificate says of itself: when it is valid and which names it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    pub validity: Validity,
    /// DNS names and IP addresses, as text.
    pub subject_alt_names: Vec<String>,
}

/// Reads the first certificate in `pem`.
pub fn inspect(pem: &str) -> Result<Inspected, PkiError> {
    use x509_parser::extensions::GeneralName;
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| PkiError::Read(format!("not PEM: {e}")))?;
    let cert = block.parse_x509().map_err(|e| PkiError::Read(format!("not an X.509 certificate: {e}")))?;
    let span = cert.validity();
    let validity = Validity { not_before: span.not_before.timestamp(), not_after: span.not_after.timestamp() };
    let names = cert.subject_alternative_name().map_err(|e| PkiError::Read(e.to_string()))?;
    let subject_alt_names = names
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_string()),
                    GeneralName::IPAddress(bytes) => ip_text(bytes),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Inspected { validity, subject_alt_names })
}

/// The certificates of a PEM bundle (a trust bundle holds one authority, or two while one is rotated), each
/// as a PEM block of its own, in order.
pub fn split_bundle(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let (Some(start), Some(end)) = (rest.find("-----BEGIN CERTIFICATE-----"), rest.find(END)) {
        if end < start {
            rest = &rest[end + END.len()..];
            continue;
        }
        blocks.push(format!("{}\n", &rest[start..end + END.len()]));
        rest = &rest[end + END.len()..];
    }
    blocks
}

/// Whether `leaf_pem`'s signature was made with the key of the authority in `authority_pem`. Names alone
/// cannot tell: an authority and the one that replaces it share their name.
pub fn issued_by(leaf_pem: &str, authority_pem: &str) -> bool {
    let parse = |pem: &str| x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok().map(|(_, block)| block);
    let (Some(leaf), Some(authority)) = (parse(leaf_pem), parse(authority_pem)) else { return false };
    let (Ok(leaf), Ok(authority)) = (leaf.parse_x509(), authority.parse_x509()) else { return false };
    leaf.verify_signature(Some(authority.public_key())).is_ok()
}

/// When the first certificate in `pem` is valid.
pub fn validity(pem: &str) -> Result<Validity, PkiError> {
    inspect(pem).map(|i| i.validity)
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes).ok().map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

/// Every name a member is reached by: its stable DNS name with and without the cluster domain (etcd checks a
/// peer's certificate against the reverse-DNS name of the peer's address, which carries the domain), the
/// client Service's names, and loopback.
pub fn member_names(cluster: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    let mut names =
        vec![format!("*.{cluster}.{namespace}.svc"), format!("*.{cluster}.{namespace}.svc.{cluster_domain}")];
    names.extend(service_names(&format!("{cluster}-client"), namespace, cluster_domain));
    names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
    names
}

/// The names of `required` that a certificate naming `subject_alt_names` does not cover. A wildcard covers
/// one leftmost label, as TLS clients match it; a required wildcard is covered only by the same wildcard.
pub fn uncovered(subject_alt_names: &[String], required: &[String]) -> Vec<String> {
    let covers = |san: &str, name: &str| {
        san.eq_ignore_ascii_case(name)
            || san.strip_prefix("*.").is_some_and(|domain| {
                name.split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && label != "*" && rest.eq_ignore_ascii_case(domain))
            })
    };
    required.iter().filter(|name| !subject_alt_names.iter().any(|san| covers(san, name))).cloned().collect()
}

/// The names a Service is reached by from inside the cluster, shortest first.
pub fn service_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
    ]
}

/// The name the operator checks every member's serving certificate against: members are dialled at their
/// pod addresses, which no certificate names, and all of them carry the client Service's name.
pub fn server_name(cluster: &str, namespace: &str) -> String {
    format!("{cluster}-client.{namespace}.svc")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn wildcards_cover_one_label_and_only_the_same_wildcard_covers_a_wildcard() {
        let sans = |names: &[&str]| names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>();
        let cert = sans(&["*.demo.prod.svc", "demo-client.prod.svc"]);
        assert!(
            uncovered(&cert, &sans(&["*.demo.prod.svc", "demo-0.demo.prod.svc", "DEMO-client.prod.svc"])).is_empty()
        );
        assert_eq!(uncovered(&cert, &sans(&["a.b.demo.prod.svc"])), ["a.b.demo.prod.svc"]);
        assert_eq!(uncovered(&cert, &sans(&["demo.prod.svc"])), ["demo.prod.svc"]);
        let explicit = sans(&["demo-0.demo.prod.svc"]);
        assert_eq!(uncovered(&explicit, &sans(&["*.demo.prod.svc"])), ["*.demo.prod.svc"]);
        assert_eq!(uncovered(&[], &sans(&["x"])), ["x"]);
    }

    #[test]
    fn a_leaf_is_issued_by_the_key_that_signed_it_not_by_a_namesake() -> Result<(), PkiError> {
        let old = new_authority("demo-peer-ca", NOW, AUTHORITY_LIFETIME)?;
        let new = new_authority("demo-peer-ca", NOW, AUTHORITY_LIFETIME)?;
        let request =
            LeafRequest { common_name: "demo".into(), subject_alt_names: vec!["x".into()], usage: Usage::Client };
        let leaf = issue(&old, &request, NOW, Duration::from_secs(3600))?;
        assert!(issued_by(&leaf.cert_pem, &old.cert_pem));
        assert!(!issued_by(&leaf.cert_pem, &new.cert_pem), "same name, another key");
        assert!(!issued_by(&leaf.cert_pem, "not a certificate"));
        let bundle = format!("{}{}", old.cert_pem, new.cert_pem);
        assert_eq!(split_bundle(&bundle), [old.cert_pem.clone(), new.cert_pem.clone()]);
        assert_eq!(split_bundle(&old.cert_pem), [old.cert_pem]);
        assert!(split_bundle("").is_empty());
        Ok(())
    }

    #[test]
    fn lifetimes_read_in_minutes_hours_and_days() {
        assert_eq!(parse_lifetime("90d"), Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_lifetime("2160h"), Some(Duration::from_secs(2160 * 3600)));
        assert_eq!(parse_lifetime("5m"), Some(Duration::from_secs(300)));
        for bad in ["", "d", "0d", "10", "10s", "-1d", "1.5d"] {
            assert_eq!(parse_lifetime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn renewal_comes_at_two_thirds_and_the_warning_in_the_last_sixth() {
        let v = Validity { not_before: 0, not_after: 90 };
        assert_eq!(v.renew_at(), 60);
        assert!(!v.expiring(74));
        assert!(v.expiring(76));
        assert!(v.expiring(100), "an expired certificate is expiring");
    }

    #[test]
    fn a_leaf_is_signed_for_its_names_and_dated_as_asked() -> Result<(), PkiError> {
        let ca = new_authority("demo-peer-ca", NOW, AUTHORITY_LIFETIME)?;
        let names = member_names("demo", "prod", "cluster.local");
        let request =
            LeafRequest { common_name: "demo".into(), subject_alt_names: names.clone(), usage: Usage::ServerAndClient };
        let leaf = issue(&ca, &request, NOW, Duration::from_secs(3600))?;
        let validity = validity(&leaf.cert_pem)?;
        assert_eq!(validity.not_after, NOW + 3600);
        assert_eq!(validity.not_before, NOW - 300);
        assert_eq!(inspect(&leaf.cert_pem)?.subject_alt_names, names);
        assert!(names.contains(&"*.demo.prod.svc.cluster.local".to_string()));
        assert!(names.contains(&"demo-client.prod.svc".to_string()));
        let short = issue(&ca, &request, NOW, Duration::from_secs(600))?;
        assert_eq!(pki_validity(&short)?.not_before, NOW - 60, "a short life is backdated by a tenth of it");
        assert_eq!(validity_of_authority(&ca)?, NOW + i64::try_from(AUTHORITY_LIFETIME.as_secs()).unwrap_or(0));
        Ok(())
    }

    fn pki_validity(certificate: &KeyedCertificate) -> Result<Validity, PkiError> {
        validity(&certificate.cert_pem)
    }

    fn validity_of_authority(ca: &KeyedCertificate) -> Result<i64, PkiError> {
        Ok(validity(&ca.cert_pem)?.not_after)
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(validity("not a certificate").is_err());
        assert!(validity("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
