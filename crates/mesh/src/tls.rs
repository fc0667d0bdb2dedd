//! Mutual TLS pinned to listed keys: each participant presents a self-signed
//! certificate of its P2P key (Ed25519, made with rcgen), and accepts a peer only if the
//! key in the peer's certificate is the one the network lists for that peer.
//!
//! No certificate authority and no names: the network file is the trust root, as the
//! contract's participant list is upstream. The handshake's own signature is checked
//! with the ring provider's algorithms against the presented certificate, so a peer
//! must hold the private key of the certificate it presents. TLS 1.3 only.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// A P2P public key: the 32 bytes of an Ed25519 key.
pub type PeerKey = [u8; 32];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The key or certificate could not be made.
    #[error("cannot make the TLS certificate of the P2P key: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// The ring provider (the project's choice of TLS crypto; the configs below allow TLS
/// 1.3 only). rustls deprecates it for lacking a post-quantum key exchange, which needs
/// the aws-lc-rs provider; the mesh's peers are pinned by key, and a move to a hybrid
/// key exchange is a change of this one function.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The self-signed certificate and private key of `key`.
fn certificate(key: &SigningKey) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let pkcs8 = key.to_pkcs8_der().map_err(|err| TlsError::Certificate(err.to_string()))?;
    let private = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&private, &rcgen::PKCS_ED25519)
        .map_err(|err| TlsError::Certificate(err.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["mpc-peer".to_owned()])
        .map_err(|err| TlsError::Certificate(err.to_string()))?;
    let cert = params.self_signed(&key_pair).map_err(|err| TlsError::Certificate(err.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(private)))
}

/// The Ed25519 key a certificate carries, if it carries one.
pub fn certificate_key(cert: &CertificateDer<'_>) -> Option<PeerKey> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let info = parsed.public_key();
    // id-Ed25519, RFC 8410.
    if info.algorithm.algorithm.to_id_string() != "1.3.101.112" {
        return None;
    }
    info.subject_public_key.data.as_ref().try_into().ok()
}

/// The server side: accepts a client whose certificate carries one of `listed`.
pub fn server_config(key: &SigningKey, listed: Vec<PeerKey>) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert, private) = certificate(key)?;
    let provider = provider();
    let verifier = Arc::new(PinnedKeys { keys: listed, algorithms: provider.signature_verification_algorithms });
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], private)?;
    Ok(Arc::new(config))
}

/// The client side, dialing the peer whose key is `expected`.
pub fn client_config(key: &SigningKey, expected: PeerKey) -> Result<Arc<ClientConfig>, TlsError> {
    let (cert, private) = certificate(key)?;
    let provider = provider();
    let verifier =
        Arc::new(PinnedKeys { keys: vec![expected], algorithms: provider.signature_verification_algorithms });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], private)?;
    Ok(Arc::new(config))
}

/// The name a client connects to: certificates are pinned by key, not by name.
pub fn peer_name() -> ServerName<'static> {
    ServerName::try_from("mpc-peer").expect("a valid DNS name")
}

/// Accepts a certificate only if its key is one of `keys`.
#[derive(Debug)]
struct PinnedKeys {
    keys: Vec<PeerKey>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedKeys {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match certificate_key(cert) {
            Some(key) if self.keys.contains(&key) => Ok(()),
            Some(key) => Err(rustls::Error::General(format!("peer key {} is not listed", hex::encode(key)))),
            None => Err(rustls::Error::General("peer certificate carries no Ed25519 key".into())),
        }
    }
}

/// The handshake-signature checks both verifier traits ask for, the same on each side:
/// TLS 1.3's signature checked with the provider's algorithms against the presented
/// certificate, Ed25519 only, TLS 1.2 refused.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
    };
}

impl ServerCertVerifier for PinnedKeys {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

impl ClientCertVerifier for PinnedKeys {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_carries_its_key() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let (cert, _) = certificate(&key).unwrap();
        assert_eq!(certificate_key(&cert), Some(key.verifying_key().to_bytes()));
    }
}
