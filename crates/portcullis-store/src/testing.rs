//! Test support (feature `testing`): a PostgreSQL database of its own for each test, on the
//! server named by `PORTCULLIS_TEST_POSTGRES` (a superuser's URL: `cargo xtask test` starts a
//! scratch server, fixtures/postgres.sh, and sets it).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// The server's URL; `None` (the PostgreSQL tests pass without running) when it is not set,
/// unless `PORTCULLIS_REQUIRE_POSTGRES` is set: the test command sets both, so a missing
/// server fails the suite there.
pub fn server_url() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("PORTCULLIS_REQUIRE_POSTGRES").is_some() => {
            panic!("PORTCULLIS_REQUIRE_POSTGRES is set but PORTCULLIS_TEST_POSTGRES is not")
        }
        _ => {
            eprintln!("PORTCULLIS_TEST_POSTGRES is not set: PostgreSQL store tests not run");
            None
        }
    }
}

/// The CA that signed the test server's certificate (for the name `localhost`), from
/// `PORTCULLIS_TEST_POSTGRES_CA`.
pub fn server_ca() -> Option<std::path::PathBuf> {
    std::env::var_os("PORTCULLIS_TEST_POSTGRES_CA")
        .filter(|ca| !ca.is_empty())
        .map(Into::into)
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

/// A superuser's connection to `server`.
pub fn admin(server: &str) -> postgres::Client {
    postgres::Client::connect(server, postgres::NoTls).unwrap()
}

/// A new, empty database, dropped (connections and all) at the end of the test.
pub struct TestDatabase {
    server: String,
    /// The database's name.
    pub name: String,
    /// Its URL (the server's, with this database).
    pub url: String,
}

impl TestDatabase {
    /// Creates it; `None` when no server is named (see [`server_url`]).
    pub fn create() -> Option<TestDatabase> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let server = server_url()?;
        let name = format!(
            "portcullis_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = admin(&server);
        // One statement per call: several would run as one transaction, which DROP and
        // CREATE DATABASE refuse.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = with_database(&server, &name);
        Some(TestDatabase { server, name, url })
    }

    /// A superuser's connection to this database (to break things the store would not).
    pub fn admin(&self) -> postgres::Client {
        admin(&self.url)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
