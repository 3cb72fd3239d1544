//! State shared by the HTTP handlers and the in-process helpers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::store::Store;
use super::tokens::Tokens;

#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    tokens: Mutex<Tokens>,
    unavailable: AtomicBool,
    pub base_url: String,
}

impl Shared {
    pub fn new(store: Store, tokens: Tokens, base_url: String) -> Self {
        Self {
            store: Mutex::new(store),
            tokens: Mutex::new(tokens),
            unavailable: AtomicBool::new(false),
            base_url,
        }
    }

    /// A panic while holding the lock leaves the data as it was written so
    /// far; the sandbox keeps serving it rather than failing every request.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_unavailable(&self, on: bool) {
        self.unavailable.store(on, Ordering::SeqCst);
    }

    pub fn is_unavailable(&self) -> bool {
        self.unavailable.load(Ordering::SeqCst)
    }

    /// The issuer named in tokens, as Keycloak derives it from its base URL.
    pub fn issuer(&self) -> String {
        format!("{}/realms/master", self.base_url)
    }
}
