//! TLS for the listener: a rustls server configuration from a PEM certificate chain and key.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use snoozebot_core::{Error, ErrorKind, Result};

/// A TLS configuration for [`ServeOptions::with_tls`](crate::ServeOptions::with_tls) from PEM
/// text: `chain` holds the server's certificate first, then its intermediates; `key` its
/// private key (PKCS#8, PKCS#1 or SEC1). HTTP/1.1 is offered by ALPN; TLS 1.2 and 1.3 with
/// rustls's safe defaults (aws-lc-rs).
pub fn tls_config(chain: &[u8], key: &[u8]) -> Result<Arc<ServerConfig>> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<std::result::Result<_, _>>()
        .map_err(|error| config_error(format!("the certificate chain is not PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(config_error("the certificate chain holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|error| config_error(format!("the private key is not PEM: {error}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| config_error(format!("cannot configure TLS: {error}")))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| {
            config_error(format!("the key does not go with the certificate: {error}"))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_chain_and_its_key_make_a_config_and_mistakes_are_config_errors() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let chain = cert.pem();
        let private = key.serialize_pem();
        assert!(super::tls_config(chain.as_bytes(), private.as_bytes()).is_ok());

        let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
        for (chain, key) in [
            ("", private.as_str()),
            ("not pem", private.as_str()),
            (chain.as_str(), "not a key"),
            (chain.as_str(), other.as_str()),
        ] {
            let error = super::tls_config(chain.as_bytes(), key.as_bytes()).unwrap_err();
            assert_eq!(error.kind(), snoozebot_core::ErrorKind::Config, "{error}");
        }
    }
}
