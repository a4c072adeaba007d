//! A test CA and the server certificates it issues (made at test time: no
//! key is committed), for the TLS tests of the S3 and admin listeners.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber};

/// A CA and a directory holding the server's `cert.pem` and `key.pem`.
pub struct TestCa {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca cert");
        TestCa { ca, dir: tempfile::tempdir().expect("tmp") }
    }

    /// A file in the CA's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.path("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.path("key.pem")
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Issues a certificate for localhost and 127.0.0.1 with this serial
    /// and writes it and its key to the server's files; its DER.
    pub fn issue(&self, serial: u64) -> Vec<u8> {
        self.issue_with(serial, true)
    }

    /// `issue`, writing the key file only when `write_key` (a certificate
    /// whose key the server never gets). The key is written first and each
    /// file is written aside and renamed: a reload between the two sees a
    /// mismatch (and keeps the old pair), never half a file.
    pub fn issue_with(&self, serial: u64, write_key: bool) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name.push(DnType::CommonName, "tessera test server");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let mut files = Vec::new();
        if write_key {
            files.push(("key.pem", key.serialize_pem()));
        }
        files.push(("cert.pem", cert.pem()));
        for (name, text) in files {
            std::fs::write(self.path("tmp.pem"), text).expect("write");
            std::fs::rename(self.path("tmp.pem"), self.path(name)).expect("rename");
        }
        cert.der().to_vec()
    }

    /// A rustls client trusting only this CA, limited to `versions`,
    /// offering ALPN `http/1.1` when `alpn`.
    pub fn client_config(&self, versions: &[&'static rustls::SupportedProtocolVersion], alpn: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("add CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        if alpn {
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        Arc::new(c)
    }
}
