//! AutoMTLS as go-plugin does it: each side makes a certificate for this one launch, the host
//! passes its own in `PLUGIN_CLIENT_CERT`, the plugin answers with its own in the handshake,
//! and each side accepts exactly the other's certificate and nothing else.
//!
//! Pinning is done by hand rather than by a CA store because go-plugin's certificates are
//! self-signed CA certificates used as end-entity certificates, which WebPKI path validation
//! rightly refuses; comparing the DER exactly is both stricter and simpler. The handshake
//! signatures are still verified with the pinned key. The aws-lc-rs provider verifies the
//! ECDSA P-521 certificates Go hosts generate (ring cannot); our own are P-256, which is ~40x
//! faster to generate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

use snoozebot_core::{Error, ErrorKind, Result};

/// The name in every AutoMTLS certificate, and the name the host asks for.
pub(crate) const TLS_SERVER_NAME: &str = "localhost";

/// A certificate and key made for one plugin launch.
pub(crate) struct LaunchIdentity {
    pub(crate) cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pub(crate) cert_pem: String,
}

fn tls_error(context: &str, error: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Plugin, format!("{context}: {error}"))
}

impl LaunchIdentity {
    /// A fresh self-signed ECDSA P-256 certificate for `localhost`, shaped like go-plugin's
    /// (a CA certificate usable for both client and server authentication).
    pub(crate) fn generate() -> Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| tls_error("generating the AutoMTLS key", e))?;
        let mut params = CertificateParams::new(vec![TLS_SERVER_NAME.to_owned()])
            .map_err(|e| tls_error("preparing the AutoMTLS certificate", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, TLS_SERVER_NAME);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Snoozebot");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_error("signing the AutoMTLS certificate", e))?;
        Ok(LaunchIdentity {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The plugin's TLS configuration: present this identity, require exactly `host_cert`.
    pub(crate) fn server_config(&self, host_cert: CertificateDer<'static>) -> Result<ServerConfig> {
        let provider = provider();
        let verifier = Arc::new(PinnedPeer {
            pinned: host_cert,
            provider: Arc::clone(&provider),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("configuring plugin TLS", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key())
            .map_err(|e| tls_error("loading the plugin certificate", e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// The host's TLS configuration: present this identity, accept exactly `plugin_cert`.
    pub(crate) fn client_config(
        &self,
        plugin_cert: CertificateDer<'static>,
    ) -> Result<ClientConfig> {
        let provider = provider();
        let verifier = Arc::new(PinnedPeer {
            pinned: plugin_cert,
            provider: Arc::clone(&provider),
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("configuring host TLS", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], self.key())
            .map_err(|e| tls_error("loading the host certificate", e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// Reads the host's certificate from `PLUGIN_CLIENT_CERT` (PEM).
pub(crate) fn parse_host_cert(pem: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        tls_error(
            "the host's certificate in PLUGIN_CLIENT_CERT is not a PEM certificate",
            e,
        )
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts exactly one certificate, byte for byte, and checks the peer's handshake signatures
/// against its key.
#[derive(Debug)]
struct PinnedPeer {
    pinned: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl PinnedPeer {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }

    fn check(&self, presented: &CertificateDer<'_>) -> std::result::Result<(), rustls::Error> {
        if presented.as_ref() == self.pinned.as_ref() {
            Ok(())
        } else {
            Err(rustls::Error::General(
                "peer certificate is not the one exchanged at launch".to_owned(),
            ))
        }
    }
}

impl ServerCertVerifier for PinnedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for PinnedPeer {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}
