//! A fresh Postgres database per test on the machine's server, dropped when the test ends.
//!
//! The server is `X402_TEST_POSTGRES` (a URL to a database the test may connect to and create
//! databases from), by default the project machines' `postgres://postgres@127.0.0.1:5432/test`
//! (trust auth). A server that cannot be reached fails the test: tests that need Postgres run
//! in CI, they never skip.

use tokio_postgres::NoTls;

/// The server tests create their databases on.
pub fn postgres_server() -> String {
    std::env::var("X402_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database created for one test (`x402_test_<random>`), dropped (with its connections)
/// when this is dropped.
#[derive(Debug)]
pub struct TempDatabase {
    /// Its URL, for a store or a config's `database`.
    pub url: String,
    name: String,
    server: String,
}

impl TempDatabase {
    /// Creates it.
    pub async fn create() -> Self {
        let server = postgres_server();
        let name = format!(
            "x402_test_{}",
            alloy::hex::encode(alloy::primitives::B64::random())
        );
        run(&server, &format!("CREATE DATABASE {name}")).await;
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("X402_TEST_POSTGRES {server:?} names no database"),
        };
        Self { url, name, server }
    }
}

impl TempDatabase {
    /// An outage: the database refuses new connections and the open ones are cut, until
    /// [`restore`](Self::restore).
    pub async fn cut(&self) {
        let name = &self.name;
        run(
            &self.server,
            &format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = '{name}' AND pid <> pg_backend_pid();"
            ),
        )
        .await;
    }

    /// Ends an outage started by [`cut`](Self::cut).
    pub async fn restore(&self) {
        let sql = format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name);
        run(&self.server, &sql).await;
    }
}

/// Runs `sql` on `server`, failing the test, with what to fix, when it cannot.
async fn run(server: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(server, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres at {server} (X402_TEST_POSTGRES) cannot be reached: {e}")
        });
    let driver = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} on {server}: {e}"));
    drop(client);
    let _ = driver.await;
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let (server, sql) = (
            self.server.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        // Its own thread and runtime: a test's runtime may be shutting down around it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(run(&server, &sql));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            eprintln!("dropping test database {} failed", self.name);
        }
    }
}
