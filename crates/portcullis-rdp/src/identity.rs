//! Is this RDP target the one we know? Decided after the TLS handshake and the security
//! protocol negotiation, before any credential is sent (no CredSSP message, no Client Info PDU).
//!
//! Sans-I/O: [`decide`] compares what the target presented (its certificate's SHA-256 and
//! whether it selected NLA) with what the gateway knows of it ([`Pin`]) and says either what to
//! remember ([`Learned`]: trust on first use, NLA seen) or why the target is refused
//! ([`Refusal`]). The adapter hands both to the caller's [`IdentityKeeper`], which stores and
//! audits them.

use std::future::Future;
use std::pin::Pin as StdPin;
use std::sync::Arc;

/// What the gateway knows of a target's identity (from the target's record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pin {
    /// SHA-256 of the certificate the target must present (lowercase hex). `None`: first use,
    /// whatever it presents is pinned.
    pub sha256: Option<String>,
    /// The target did NLA before: without NLA now it is a downgrade.
    pub nla_seen: bool,
    /// An administrator requires NLA for this target.
    pub require_nla: bool,
    /// Verify the certificate against this CA bundle (PEM) and the address's host name instead
    /// of the pin.
    pub ca_file: Option<std::path::PathBuf>,
}

/// What the target presented on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// SHA-256 of its TLS certificate (DER), lowercase hex.
    pub sha256: String,
    /// It selected NLA (CredSSP, `HYBRID` or `HYBRID_EX`) rather than TLS alone.
    pub nla: bool,
    /// When the pin names a CA bundle: whether the certificate chains to it and names the host
    /// (`Err`: why not). `None`: not checked.
    pub ca_verdict: Option<Result<(), String>>,
}

/// Why a target is refused. Shown to the administrator (and the user) as is: it names both
/// fingerprints, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The certificate is not the pinned one.
    #[error(
        "the target's TLS certificate changed: expected SHA-256 {expected}, presented {presented}; \
         nothing was sent to it, an administrator must accept the new certificate"
    )]
    CertificateChanged {
        /// The pinned fingerprint.
        expected: String,
        /// What the target presented.
        presented: String,
    },
    /// The target selected TLS alone where NLA is required or was seen before.
    #[error(
        "the target did not select NLA (it answered TLS only) but {}; refused as a downgrade, \
         nothing was sent to it (certificate SHA-256 {presented})",
        if *.required { "this target requires NLA" } else { "it did NLA before" }
    )]
    Downgrade {
        /// Required by the target's settings (else: remembered from an earlier connection).
        required: bool,
        /// The certificate the target presented (it matched the pin, if any).
        presented: String,
    },
    /// The certificate does not verify against the target's CA bundle and host name.
    #[error(
        "the target's TLS certificate (SHA-256 {presented}) does not verify against the CA bundle: \
         {reason}; nothing was sent to it"
    )]
    CaRejected {
        /// What the target presented.
        presented: String,
        /// Why it did not verify.
        reason: String,
    },
    /// What the connection taught could not be recorded (store or audit trail failing): the
    /// gateway fails closed.
    #[error("the target's identity could not be recorded, so no login was attempted: {0}")]
    NotRemembered(String),
}

impl Refusal {
    /// A short name for logs and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::CertificateChanged { .. } => "certificate_changed",
            Refusal::Downgrade { .. } => "nla_downgrade",
            Refusal::CaRejected { .. } => "ca_rejected",
            Refusal::NotRemembered(_) => "not_remembered",
        }
    }
}

/// What an accepted connection taught the gateway, to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The certificate's SHA-256.
    pub sha256: String,
    /// It is pinned now for the first time (trust on first use).
    pub first_certificate: bool,
    /// The target did NLA, and this is news: remember it (no downgrade later).
    pub first_nla: bool,
}

impl Learned {
    /// Whether there is anything new to store.
    pub fn is_news(&self) -> bool {
        self.first_certificate || self.first_nla
    }
}

/// The decision: accept (and remember what is new) or refuse.
pub fn decide(pin: &Pin, presented: &Presented) -> Result<Learned, Refusal> {
    if pin.ca_file.is_some() {
        // Verified by a CA: the certificate may change (renewals), the pin is not used.
        match &presented.ca_verdict {
            Some(Ok(())) => {}
            Some(Err(reason)) => {
                return Err(Refusal::CaRejected {
                    presented: presented.sha256.clone(),
                    reason: reason.clone(),
                })
            }
            None => {
                return Err(Refusal::CaRejected {
                    presented: presented.sha256.clone(),
                    reason: "it was not checked".into(),
                })
            }
        }
    } else if let Some(expected) = &pin.sha256 {
        if !expected.eq_ignore_ascii_case(&presented.sha256) {
            return Err(Refusal::CertificateChanged {
                expected: expected.to_ascii_lowercase(),
                presented: presented.sha256.clone(),
            });
        }
    }
    if !presented.nla && (pin.require_nla || pin.nla_seen) {
        return Err(Refusal::Downgrade {
            required: pin.require_nla,
            presented: presented.sha256.clone(),
        });
    }
    Ok(Learned {
        sha256: presented.sha256.clone(),
        first_certificate: pin.sha256.is_none() && pin.ca_file.is_none(),
        first_nla: presented.nla && !pin.nla_seen,
    })
}

/// A boxed future, `Send`.
pub type BoxFuture<'a, T> = StdPin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the adapter reports what it decided, before it goes on (the gateway stores the pin and
/// writes the audit record). Called on the session's thread, before any credential is sent.
pub trait IdentityKeeper: Send + Sync + 'static {
    /// The target was accepted and taught something new. An error refuses the connection (the
    /// gateway could not remember it: fail closed); its text is shown.
    fn learned<'a>(&'a self, learned: &'a Learned) -> BoxFuture<'a, Result<(), String>>;
    /// The target was refused; the connection is dropped when this returns.
    fn refused<'a>(&'a self, refusal: &'a Refusal) -> BoxFuture<'a, ()>;
}

/// The identity check of one connection: what is pinned, and who keeps what is learned.
#[derive(Clone, Default)]
pub struct IdentityCheck {
    /// What the gateway knows of the target.
    pub pin: Pin,
    /// Told of every decision; `None`: nothing is remembered (tools, tests).
    pub keeper: Option<Arc<dyn IdentityKeeper>>,
}

impl std::fmt::Debug for IdentityCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCheck")
            .field("pin", &self.pin)
            .field("keeper", &self.keeper.is_some())
            .finish()
    }
}

impl IdentityCheck {
    /// Decides on `presented` and tells the keeper. `Ok`: go on with the login.
    pub(crate) async fn check(&self, presented: &Presented) -> Result<(), Refusal> {
        match decide(&self.pin, presented) {
            Ok(learned) => {
                if let (true, Some(keeper)) = (learned.is_news(), &self.keeper) {
                    if let Err(e) = keeper.learned(&learned).await {
                        return Err(Refusal::NotRemembered(e));
                    }
                }
                Ok(())
            }
            Err(refusal) => {
                if let Some(keeper) = &self.keeper {
                    keeper.refused(&refusal).await;
                }
                Err(refusal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::Mutex;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn seen(sha256: &str, nla: bool) -> Presented {
        Presented {
            sha256: sha256.to_owned(),
            nla,
            ca_verdict: None,
        }
    }

    fn pinned(sha256: Option<&str>, nla_seen: bool, require_nla: bool) -> Pin {
        Pin {
            sha256: sha256.map(str::to_owned),
            nla_seen,
            require_nla,
            ca_file: None,
        }
    }

    #[test]
    fn a_ca_bundle_replaces_the_pin() {
        let pin = Pin {
            ca_file: Some("/etc/ca.pem".into()),
            ..pinned(Some(A), true, false)
        };
        let verified = |sha: &str, nla, verdict: Result<(), String>| Presented {
            ca_verdict: Some(verdict),
            ..seen(sha, nla)
        };
        // Another certificate that the CA vouches for: accepted, nothing pinned.
        let l = decide(&pin, &verified(B, true, Ok(()))).unwrap();
        assert!(!l.is_news(), "{l:?}");
        let r = decide(&pin, &verified(A, true, Err("unknown issuer".into()))).unwrap_err();
        assert_eq!(r.reason(), "ca_rejected");
        assert!(
            r.to_string().contains("unknown issuer") && r.to_string().contains(A),
            "{r}"
        );
        assert!(
            decide(&pin, &seen(A, true)).is_err(),
            "unchecked is refused"
        );
        // The downgrade rule still holds.
        let r = decide(&pin, &verified(B, false, Ok(()))).unwrap_err();
        assert_eq!(r.reason(), "nla_downgrade");
    }

    #[test]
    fn first_use_pins_the_certificate_and_nla() {
        let l = decide(&Pin::default(), &seen(A, true)).unwrap();
        assert!(l.first_certificate && l.first_nla && l.is_news());
        assert_eq!(l.sha256, A);
        let l = decide(&Pin::default(), &seen(A, false)).unwrap();
        assert!(l.first_certificate && !l.first_nla);
    }

    #[test]
    fn a_known_target_teaches_nothing_new() {
        let l = decide(&pinned(Some(A), true, false), &seen(A, true)).unwrap();
        assert!(!l.is_news(), "{l:?}");
        let l = decide(&pinned(Some(A), false, false), &seen(A, false)).unwrap();
        assert!(!l.is_news(), "{l:?}");
        // Pinned ahead of time in upper case: still the same certificate.
        let l = decide(
            &pinned(Some(&A.to_uppercase()), false, false),
            &seen(A, false),
        );
        assert!(l.is_ok());
    }

    #[test]
    fn another_certificate_is_refused_naming_both() {
        let r = decide(&pinned(Some(A), false, false), &seen(B, false)).unwrap_err();
        assert_eq!(
            r,
            Refusal::CertificateChanged {
                expected: A.into(),
                presented: B.into()
            }
        );
        let text = r.to_string();
        assert!(text.contains(A) && text.contains(B), "{text}");
        assert_eq!(r.reason(), "certificate_changed");
        // Even with NLA: the certificate decides first.
        assert!(decide(&pinned(Some(A), true, false), &seen(B, true)).is_err());
    }

    #[test]
    fn tls_only_after_nla_is_a_downgrade() {
        let r = decide(&pinned(Some(A), true, false), &seen(A, false)).unwrap_err();
        assert!(
            matches!(
                r,
                Refusal::Downgrade {
                    required: false,
                    ..
                }
            ),
            "{r:?}"
        );
        assert!(r.to_string().contains("did NLA before"), "{r}");
        // Remembered NLA without a pinned certificate (pin cleared by an admin): still refused.
        assert!(decide(&pinned(None, true, false), &seen(A, false)).is_err());
    }

    #[test]
    fn require_nla_refuses_tls_only_even_the_first_time() {
        let r = decide(&pinned(None, false, true), &seen(A, false)).unwrap_err();
        assert!(
            matches!(r, Refusal::Downgrade { required: true, .. }),
            "{r:?}"
        );
        assert!(r.to_string().contains("requires NLA"), "{r}");
        assert!(decide(&pinned(None, false, true), &seen(A, true)).is_ok());
    }

    #[derive(Default)]
    struct Keeper {
        learned: Mutex<Vec<Learned>>,
        refused: Mutex<Vec<Refusal>>,
        fail: bool,
    }

    impl IdentityKeeper for Keeper {
        fn learned<'a>(&'a self, learned: &'a Learned) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                if self.fail {
                    return Err("the store is read-only".into());
                }
                self.learned.lock().unwrap().push(learned.clone());
                Ok(())
            })
        }
        fn refused<'a>(&'a self, refusal: &'a Refusal) -> BoxFuture<'a, ()> {
            Box::pin(async move { self.refused.lock().unwrap().push(refusal.clone()) })
        }
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_keeper_hears_news_and_refusals_only() {
        let keeper = Arc::new(Keeper::default());
        let check = |pin: Pin| IdentityCheck {
            pin,
            keeper: Some(std::sync::Arc::<Keeper>::clone(&keeper) as Arc<dyn IdentityKeeper>),
        };
        run(check(Pin::default()).check(&seen(A, true))).unwrap();
        run(check(pinned(Some(A), true, false)).check(&seen(A, true))).unwrap();
        assert_eq!(keeper.learned.lock().unwrap().len(), 1);
        let r = run(check(pinned(Some(A), true, false)).check(&seen(B, true))).unwrap_err();
        assert_eq!(keeper.refused.lock().unwrap().as_slice(), &[r]);
    }

    #[test]
    fn a_pin_that_cannot_be_stored_refuses_the_connection() {
        let keeper = Arc::new(Keeper {
            fail: true,
            ..Keeper::default()
        });
        let check = IdentityCheck {
            pin: Pin::default(),
            keeper: Some(keeper as Arc<dyn IdentityKeeper>),
        };
        let r = run(check.check(&seen(A, false))).unwrap_err();
        assert!(matches!(r, Refusal::NotRemembered(_)), "{r:?}");
    }
}
