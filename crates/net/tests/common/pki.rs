//! Certificates made at run time with rcgen: a CA, server and client certificates it
//! signs, written as PEM files to a temporary directory.
#![allow(dead_code)]

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that signs leaf certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// PEM files of one leaf certificate (and of the CA that signed it).
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        Self { cert, key }
    }

    /// Writes the CA certificate as `<name>.pem` in `dir`.
    pub fn write(&self, dir: &std::path::Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.cert.pem()).expect("write CA");
        path
    }

    fn leaf(
        &self,
        dir: &std::path::Path,
        name: &str,
        sans: &[&str],
        purpose: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        Leaf {
            cert: cert_path,
            key: key_path,
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn server(&self, dir: &std::path::Path, name: &str) -> Leaf {
        self.leaf(
            dir,
            name,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A server certificate naming only `sans`.
    pub fn server_for(&self, dir: &std::path::Path, name: &str, sans: &[&str]) -> Leaf {
        self.leaf(dir, name, sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for terminal `name`.
    pub fn client(&self, dir: &std::path::Path, name: &str) -> Leaf {
        self.leaf(dir, name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}
