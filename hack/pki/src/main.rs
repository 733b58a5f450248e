//! Writes the local test cluster's certificate authority, the certificates of its components and the
//! service-account signing key into a folder, as `<name>.crt` / `<name>.key` PEM files.
//!
//!   pki <out-dir> <node-name> <node-ip> <kubernetes-service-ip> [<node-name>=<node-ip> ...]
//!
//! Each further node gets its kubelet's serving and client pair, named `kubelet-<node>` and
//! `kubelet-client-<node>`.
//!
//! Everything is freshly generated on each run: the cluster's identities live only as long as its state.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What a leaf certificate is used for, which decides its extended key usages.
#[derive(Clone, Copy)]
enum Usage {
    Server,
    Client,
    Both,
}

/// One leaf certificate: file name, subject and alternative names.
struct Leaf<'a> {
    file: String,
    common_name: String,
    organization: Option<&'a str>,
    sans: Vec<String>,
    usage: Usage,
}

struct Args {
    out: PathBuf,
    node: String,
    node_ip: IpAddr,
    service_ip: IpAddr,
    /// The nodes beside the first, by name and address.
    more_nodes: Vec<(String, IpAddr)>,
}

fn parse_args() -> Result<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: pki <out-dir> <node-name> <node-ip> <kubernetes-service-ip> [<node-name>=<node-ip> ...]";
    let [out, node, node_ip, service_ip, more @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let more_nodes = more
        .iter()
        .map(|pair| {
            let (name, ip) = pair.split_once('=').ok_or_else(|| format!("{pair:?}: {usage}"))?;
            Ok((name.to_string(), ip.parse().map_err(|e| format!("node ip {ip:?}: {e}"))?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Args {
        more_nodes,
        out: PathBuf::from(out),
        node: node.clone(),
        node_ip: node_ip.parse().map_err(|e| format!("node ip {node_ip:?}: {e}"))?,
        service_ip: service_ip.parse().map_err(|e| format!("service ip {service_ip:?}: {e}"))?,
    })
}

fn leaves(args: &Args) -> Vec<Leaf<'_>> {
    let loopback = "127.0.0.1".to_string();
    let node_ip = args.node_ip.to_string();
    let leaf = |file: &str, cn: &str, organization, sans: Vec<String>, usage| Leaf {
        file: file.to_string(),
        common_name: cn.to_string(),
        organization,
        sans,
        usage,
    };
    let mut apiserver_sans: Vec<String> = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    apiserver_sans.extend(["kubernetes.default.svc.cluster.local".into(), loopback.clone(), node_ip.clone()]);
    apiserver_sans.push(args.service_ip.to_string());
    let mut leaves = vec![
        // The apiserver's own etcd: serving on loopback, and the apiserver as its only client.
        leaf("etcd-server", "etcd-server", None, vec!["localhost".into(), loopback.clone()], Usage::Both),
        leaf("apiserver-etcd-client", "kube-apiserver-etcd-client", None, vec![], Usage::Client),
        leaf("apiserver", "kube-apiserver", None, apiserver_sans, Usage::Server),
        // Lets the apiserver call the kubelet (logs, exec, port-forward); authorized as a cluster admin.
        leaf(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            vec![],
            Usage::Client,
        ),
        leaf("admin", "kubernetes-admin", Some("system:masters"), vec![], Usage::Client),
        leaf("kube-controller-manager", "system:kube-controller-manager", None, vec![], Usage::Client),
        leaf("kube-scheduler", "system:kube-scheduler", None, vec![], Usage::Client),
        leaf("kube-proxy", "system:kube-proxy", None, vec![], Usage::Client),
        // The Node authorizer only admits a kubelet whose identity names its node.
        leaf("kubelet-client", &format!("system:node:{}", args.node), Some("system:nodes"), vec![], Usage::Client),
        leaf("kubelet", &args.node, None, vec![args.node.clone(), node_ip, loopback], Usage::Server),
        leaf("provisioner", "etcd-op:provisioner", None, vec![], Usage::Client),
        leaf("kube-router", "etcd-op:kube-router", None, vec![], Usage::Client),
        leaf("cert-manager", "etcd-op:cert-manager", None, vec![], Usage::Client),
    ];
    for (name, ip) in &args.more_nodes {
        leaves.push(Leaf {
            file: format!("kubelet-client-{name}"),
            common_name: format!("system:node:{name}"),
            organization: Some("system:nodes"),
            sans: vec![],
            usage: Usage::Client,
        });
        leaves.push(Leaf {
            file: format!("kubelet-{name}"),
            common_name: name.clone(),
            organization: None,
            sans: vec![name.clone(), ip.to_string()],
            usage: Usage::Server,
        });
    }
    leaves
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

fn subject(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    name
}

fn run(args: &Args) -> Result<()> {
    fs::create_dir_all(&args.out)?;

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = subject("etcd-op-local-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    write_file(&args.out.join("ca.crt"), &ca.pem(), 0o644)?;
    write_file(&args.out.join("ca.key"), &ca_key_pem, 0o600)?;

    for leaf in leaves(args) {
        let mut params = CertificateParams::new(leaf.sans.clone())?;
        params.distinguished_name = subject(&leaf.common_name, leaf.organization);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = match leaf.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Both => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        write_file(&args.out.join(format!("{}.crt", leaf.file)), &cert.pem(), 0o644)?;
        write_file(&args.out.join(format!("{}.key", leaf.file)), &key.serialize_pem(), 0o600)?;
    }

    // Service-account tokens are signed with this key and verified with its public half.
    let sa = KeyPair::generate()?;
    write_file(&args.out.join("sa.key"), &sa.serialize_pem(), 0o600)?;
    write_file(&args.out.join("sa.pub"), &sa.public_key_pem(), 0o644)?;
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pki: {e}");
            ExitCode::FAILURE
        }
    }
}
