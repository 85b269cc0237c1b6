//! TLS to a real PostgreSQL cluster with `ssl = on`, whose certificate a throw-away CA signed
//! for the name `localhost` only. `scripts/test-postgres.sh` creates both with openssl and sets
//! the variables; without them the test is skipped (or fails under CI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aegis_store_postgres::testing::{TestDatabase, root_certificates, uses_tls};
use aegis_store_postgres::{PostgresConfig, PostgresStore, StoreOpenError};

async fn connect(url: &str) -> Result<PostgresStore, StoreOpenError> {
    PostgresStore::connect(url, PostgresConfig::default().with_pool_size(1)).await
}

#[tokio::test]
async fn sslmodes_against_tls_cluster() {
    let Some((root, other_root)) = root_certificates("sslmodes_against_tls_cluster") else {
        return;
    };
    let Some(database) = TestDatabase::create("sslmodes_against_tls_cluster").await else {
        return;
    };
    let by_ip = database.url().to_owned();
    assert!(by_ip.contains("127.0.0.1"), "the test cluster listens on 127.0.0.1: {by_ip}");
    let by_name = by_ip.replace("127.0.0.1", "localhost");
    let with = |url: &str, query: &str| format!("{url}?{query}");

    let store = connect(&with(&by_ip, "sslmode=disable")).await.unwrap();
    assert!(!uses_tls(&store).await, "sslmode=disable connects in plain text");
    store.close();

    let store = connect(&by_ip).await.unwrap();
    assert!(uses_tls(&store).await, "the default (prefer) encrypts when the server supports TLS");
    store.close();

    // require encrypts without checking the certificate, so neither the CA nor the name matters.
    let store = connect(&with(&by_ip, "sslmode=require")).await.unwrap();
    assert!(uses_tls(&store).await, "sslmode=require encrypts");
    store.close();

    let store = connect(&with(&by_name, &format!("sslmode=verify-full&sslrootcert={root}"))).await.unwrap();
    assert!(uses_tls(&store).await, "verify-full accepts the right CA and host name");
    store.close();

    let wrong_root = connect(&with(&by_name, &format!("sslmode=verify-full&sslrootcert={other_root}"))).await;
    let error = wrong_root.expect_err("verify-full must reject a certificate of another CA").to_string();
    assert!(error.contains("certificate"), "the error names the certificate: {error}");

    let wrong_name = connect(&with(&by_ip, &format!("sslmode=verify-full&sslrootcert={root}"))).await;
    assert!(wrong_name.is_err(), "verify-full must reject a certificate issued for another name");

    let store = connect(&with(&by_ip, &format!("sslmode=verify-ca&sslrootcert={root}"))).await.unwrap();
    assert!(uses_tls(&store).await, "verify-ca checks the chain but not the name");
    store.close();

    let wrong_root = connect(&with(&by_ip, &format!("sslmode=verify-ca&sslrootcert={other_root}"))).await;
    assert!(wrong_root.is_err(), "verify-ca must reject a certificate of another CA");

    // As in libpq, require with a root file verifies the chain.
    let wrong_root = connect(&with(&by_ip, &format!("sslmode=require&sslrootcert={other_root}"))).await;
    assert!(wrong_root.is_err(), "require with sslrootcert must verify the chain");

    database.drop_database().await;
}
