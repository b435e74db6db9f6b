//! The connector plugin assembled from Maven Central itself: the pinned Debezium MySQL
//! connector (by default the local stack's version, tests/stack/pom.xml) resolves, passes its
//! published SHA-1, and brings the jars the connector needs. Needs the network: it runs when
//! WRT_MAVEN_CENTRAL_TESTS=1 (`.ci/test` sets it).

use std::io::Write;

use sha2::{Digest, Sha256};
use wrt_infra::{Check, Recipe, Topology, assemble, stack_debezium_version};

#[test]
fn the_pinned_debezium_connector_resolves_from_maven_central() {
    if std::env::var_os("WRT_MAVEN_CENTRAL_TESTS").is_none() {
        eprintln!("skipped: set WRT_MAVEN_CENTRAL_TESTS=1 to download from Maven Central");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The config provider is published on GitHub only, out of reach here: a local stand-in
    // takes its place, pinned the same way.
    let mut provider = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    provider
        .start_file("provider.jar", zip::write::SimpleFileOptions::default())
        .unwrap();
    provider.write_all(b"stand-in").unwrap();
    let provider = provider.finish().unwrap().into_inner();
    std::fs::write(dir.path().join("provider.zip"), &provider).unwrap();

    let topology = Topology::default();
    let version = topology.connector.debezium_version.clone();
    assert_eq!(version, stack_debezium_version());
    let mut recipe = Recipe::of(&topology);
    recipe.parts[1].url = format!("file://{}", dir.path().join("provider.zip").display());
    recipe.parts[1].check = Check::Sha256(Some(hex::encode(Sha256::digest(&provider))));

    let lines = std::sync::Mutex::new(Vec::new());
    let zip = assemble(&recipe, &dir.path().join("cache"), &|line: &str| {
        lines.lock().unwrap().push(line.to_owned())
    })
    .unwrap();
    let lines = lines.into_inner().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("downloading debezium-connector-mysql-")),
        "no download progress: {lines:?}"
    );

    let jars: Vec<&str> = zip
        .files
        .iter()
        .filter_map(|f| f.strip_prefix("debezium-connector-mysql/"))
        .filter(|f| f.ends_with(".jar"))
        .collect();
    eprintln!("{} jars: {jars:?}", jars.len());
    for wanted in [
        format!("debezium-connector-mysql-{version}.jar"),
        format!("debezium-connector-binlog-{version}.jar"),
        format!("debezium-core-{version}.jar"),
        format!("debezium-api-{version}.jar"),
        format!("debezium-ddl-parser-{version}.jar"),
    ] {
        assert!(
            jars.contains(&wanted.as_str()),
            "{wanted} missing: {jars:?}"
        );
    }
    for library in [
        "mysql-binlog-connector-java-",
        "mysql-connector-j-",
        "antlr4-runtime-",
    ] {
        assert!(
            jars.iter().any(|j| j.starts_with(library)),
            "{library}* missing: {jars:?}"
        );
    }
    // Every Debezium jar is of the pinned version, and Kafka's own come from the worker.
    for jar in jars.iter().filter(|j| j.starts_with("debezium-")) {
        assert!(jar.ends_with(&format!("-{version}.jar")), "{jar}");
    }
    assert!(
        !jars
            .iter()
            .any(|j| j.starts_with("kafka-") || j.starts_with("connect-")),
        "{jars:?}"
    );
    assert!(
        zip.files
            .contains(&"msk-config-providers/provider.jar".to_owned())
    );
    // From the cache, a second assembly fetches only the checksum, and makes the same bytes.
    let again = assemble(&recipe, &dir.path().join("cache"), &|_: &str| {}).unwrap();
    assert_eq!(again.sha256, zip.sha256);
}
