//! `wrt infra` against moto's server on loopback: each test starts its own server, so
//! tests share nothing. Install moto with `bash .ci/moto`.

mod server;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_ec2::types::Filter;
use sha2::Digest;
use wrt_infra::{Action, DeployFuture, HostBinary, Plan, Stack, Topology, TransformDeploy, Waits};

use server::Moto;

/// What `up` ships, made up locally: a Maven repository holding a Debezium plugin archive
/// (with its `.sha1`), a config provider zip, and the hosts' wrt binary.
struct Shipped {
    dir: tempfile::TempDir,
}

/// The jars of the Debezium archive, which the plugin zip must list.
const DEBEZIUM_JARS: [&str; 3] = [
    "debezium-connector-mysql-3.4.0.Final.jar",
    "debezium-core-3.4.0.Final.jar",
    "mysql-binlog-connector-java-0.40.3.jar",
];

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in files {
        writer
            .start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

impl Shipped {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let version = dir
            .path()
            .join("m2/io/debezium/debezium-connector-mysql/3.4.0.Final");
        std::fs::create_dir_all(&version).unwrap();
        let files: Vec<(String, Vec<u8>)> = DEBEZIUM_JARS
            .iter()
            .map(|jar| {
                (
                    format!("debezium-connector-mysql/{jar}"),
                    jar.as_bytes().to_vec(),
                )
            })
            .chain([(
                "debezium-connector-mysql/LICENSE.txt".to_owned(),
                b"Apache-2.0".to_vec(),
            )])
            .collect();
        let archive = zip_of(&files);
        let name = "debezium-connector-mysql-3.4.0.Final-plugin.zip";
        std::fs::write(version.join(name), &archive).unwrap();
        let sha1 = hex::encode(sha1::Sha1::digest(&archive));
        std::fs::write(version.join(format!("{name}.sha1")), sha1).unwrap();
        let provider = zip_of(&[(
            "msk-config-providers-0.1.0.jar".to_owned(),
            b"provider".to_vec(),
        )]);
        std::fs::write(dir.path().join("provider.zip"), provider).unwrap();
        // The first bytes of a Linux x86_64 executable: all `up` reads of the hosts' wrt.
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        elf.resize(18, 0);
        elf.extend_from_slice(&0x3e_u16.to_le_bytes());
        elf.resize(4096, 0);
        std::fs::write(dir.path().join("wrt"), elf).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[connector]` section that downloads from here.
    fn connector_section(&self) -> String {
        let provider = self.path("provider.zip");
        let sha256 = hex::encode(sha2::Sha256::digest(std::fs::read(&provider).unwrap()));
        format!(
            "[connector]\ndebezium-version = \"3.4.0.Final\"\n\
             maven-repository = \"file://{}\"\n\
             config-provider = {{ url = \"file://{}\", sha256 = \"{sha256}\" }}\n",
            self.path("m2").display(),
            provider.display()
        )
    }
}

/// The recipe's topology with no final snapshot to leave behind, downloading the plugin's
/// parts from `shipped`.
fn topology(stack: &str, shipped: &Shipped) -> Topology {
    let t = Topology::parse(&format!(
        "stack = \"{stack}\"\n[database]\nfinal-snapshot = false\n{}",
        shipped.connector_section()
    ))
    .unwrap();
    t.validate().unwrap();
    t
}

/// moto answers at once; keep polls short so a slip shows as a quick timeout.
fn waits() -> Waits {
    let short = Duration::from_secs(60);
    Waits {
        network: short,
        database: short,
        kafka: short,
        hosts: short,
        connector: short,
        poll: Duration::from_millis(200),
    }
}

/// A stack on moto, which lacks MSK Connect: the plugin zip is uploaded, the MSK Connect
/// resources are left out. The transform "deploy" writes what a real one leaves in the
/// registry (the CLI test runs the real one through the wrt binary).
fn stack(t: Topology, config: &SdkConfig, shipped: &Shipped) -> Stack {
    let wrt = HostBinary::check(&shipped.path("wrt"), "x86_64", "t3.small").unwrap();
    let s3 = s3_client(config);
    let (lake, name) = (t.lake_bucket(), t.stack.clone());
    let wasm = b"\0asm transform".to_vec();
    let digest = hex::encode(sha2::Sha256::digest(&wasm));
    let deploy = {
        let digest = digest.clone();
        move || -> DeployFuture {
            let (s3, lake, name, wasm, digest) = (
                s3.clone(),
                lake.clone(),
                name.clone(),
                wasm.clone(),
                digest.clone(),
            );
            Box::pin(async move {
                let prefix = format!("_wrt/transforms/{name}/");
                let pointer =
                    serde_json::json!({ "pipeline": name, "current": digest, "history": [] });
                for (key, body) in [
                    (format!("{prefix}{digest}.wasm"), wasm),
                    (
                        format!("{prefix}current.json"),
                        pointer.to_string().into_bytes(),
                    ),
                ] {
                    (s3.put_object().bucket(&lake).key(key).body(body.into()))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        }
    };
    Stack::with_clients(t, server::clients(config))
        .unwrap()
        .with_waits(waits())
        .without_msk_connect()
        .with_host_binary(wrt)
        .with_transform(TransformDeploy {
            digest,
            deploy: Arc::new(deploy),
        })
        .with_download_cache(shipped.path("cache"))
}

fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// Runs `up`, collecting its progress lines.
async fn up(stack: &Stack) -> Result<(Plan, Vec<String>)> {
    let lines = Mutex::new(Vec::new());
    let plan = stack
        .up(&|line: &str| lines.lock().unwrap().push(line.to_owned()))
        .await?;
    Ok((plan, lines.into_inner().unwrap()))
}

fn quiet(_: &str) {}

fn tag_filter(stack: &str) -> Filter {
    Filter::builder()
        .name("tag:wrt:stack")
        .values(stack)
        .build()
}

#[tokio::test]
async fn up_creates_every_resource_as_the_table_says() -> Result<()> {
    let moto = Moto::start().await?;
    let shipped = Shipped::new();
    let config = moto.config().await;
    let s = stack(topology("tbl", &shipped), &config, &shipped);
    let (plan, lines) = up(&s).await?;
    assert!(
        plan.steps
            .iter()
            .all(|st| matches!(st.action, Action::Create | Action::Deferred))
    );
    assert!(
        lines.iter().any(|l| l.starts_with("creating vpc tbl-vpc")),
        "{lines:#?}"
    );

    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpcs = ec2
        .describe_vpcs()
        .filters(tag_filter("tbl"))
        .send()
        .await?;
    let [vpc] = vpcs.vpcs() else {
        panic!("one VPC: {vpcs:?}")
    };
    assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
    let vpc_id = vpc.vpc_id().unwrap();

    let subnets = ec2
        .describe_subnets()
        .filters(tag_filter("tbl"))
        .send()
        .await?;
    let mut found: Vec<(String, String, String)> = subnets
        .subnets()
        .iter()
        .map(|s| {
            assert_eq!(s.vpc_id(), Some(vpc_id));
            (
                name_of(s.tags()),
                s.cidr_block().unwrap().into(),
                s.availability_zone().unwrap().into(),
            )
        })
        .collect();
    found.sort();
    let row = |n: &str, c: &str, a: &str| (n.to_owned(), c.to_owned(), a.to_owned());
    assert_eq!(
        found,
        [
            row("tbl-private-1", "10.0.3.0/24", "us-west-2a"),
            row("tbl-private-2", "10.0.4.0/24", "us-west-2c"),
            row("tbl-public-1", "10.0.1.0/24", "us-west-2a"),
            row("tbl-public-2", "10.0.2.0/24", "us-west-2c"),
        ]
    );
    let subnet_id = |name: &str| {
        subnets
            .subnets()
            .iter()
            .find(|s| name_of(s.tags()) == name)
            .and_then(|s| s.subnet_id())
            .unwrap()
            .to_owned()
    };

    let igws = ec2
        .describe_internet_gateways()
        .filters(tag_filter("tbl"))
        .send()
        .await?;
    let [igw] = igws.internet_gateways() else {
        panic!("one IGW")
    };
    assert_eq!(igw.attachments()[0].vpc_id(), Some(vpc_id));
    let igw_id = igw.internet_gateway_id().unwrap();

    let eips = ec2
        .describe_addresses()
        .filters(tag_filter("tbl"))
        .send()
        .await?;
    let [eip] = eips.addresses() else {
        panic!("one EIP")
    };
    let nats = ec2
        .describe_nat_gateways()
        .filter(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await?;
    let [nat] = nats.nat_gateways() else {
        panic!("one NAT gateway")
    };
    assert_eq!(nat.subnet_id(), Some(subnet_id("tbl-public-1").as_str()));
    assert_eq!(
        nat.nat_gateway_addresses()[0].allocation_id(),
        eip.allocation_id()
    );
    let nat_id = nat.nat_gateway_id().unwrap();

    let tables = ec2
        .describe_route_tables()
        .filters(tag_filter("tbl"))
        .send()
        .await?;
    assert_eq!(tables.route_tables().len(), 2);
    for table in tables.route_tables() {
        let name = name_of(table.tags());
        let tier = name.trim_start_matches("tbl-");
        let mut routes: Vec<(String, String)> = table
            .routes()
            .iter()
            .map(|r| {
                let target = r.gateway_id().or(r.nat_gateway_id()).unwrap();
                (r.destination_cidr_block().unwrap().into(), target.into())
            })
            .collect();
        routes.sort();
        let default_target = if tier == "public" { igw_id } else { nat_id };
        assert_eq!(
            routes,
            [
                ("0.0.0.0/0".to_owned(), default_target.to_owned()),
                ("10.0.0.0/16".to_owned(), "local".to_owned()),
            ],
            "{name}"
        );
        let mut associated: Vec<String> = table
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id().map(str::to_owned))
            .collect();
        associated.sort();
        let mut want = vec![
            subnet_id(&format!("tbl-{tier}-1")),
            subnet_id(&format!("tbl-{tier}-2")),
        ];
        want.sort();
        assert_eq!(associated, want, "{name}");
    }

    let groups = ec2
        .describe_security_groups()
        .filters(tag_filter("tbl"))
        .send()
        .await?;
    let [sg] = groups.security_groups() else {
        panic!("one security group")
    };
    let sg_id = sg.group_id().unwrap();
    let mut rules: Vec<String> = sg
        .ip_permissions()
        .iter()
        .flat_map(|p| {
            let from_cidr = p
                .ip_ranges()
                .iter()
                .map(|r| r.cidr_ip().unwrap().to_owned());
            let from_group = p
                .user_id_group_pairs()
                .iter()
                .map(|g| g.group_id().unwrap().to_owned());
            from_cidr
                .chain(from_group)
                .map(|src| format!("{} from {src}", p.ip_protocol().unwrap()))
        })
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        ["-1 from 10.0.0.0/16".to_owned(), format!("-1 from {sg_id}")]
    );

    let rds = aws_sdk_rds::Client::new(&config);
    let group = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name("tbl-db-subnets")
        .send()
        .await?;
    let mut in_group: Vec<String> = group.db_subnet_groups()[0]
        .subnets()
        .iter()
        .map(|s| s.subnet_identifier().unwrap().to_owned())
        .collect();
    in_group.sort();
    let mut private = vec![subnet_id("tbl-private-1"), subnet_id("tbl-private-2")];
    private.sort();
    assert_eq!(in_group, private);
    let params = rds
        .describe_db_parameter_groups()
        .db_parameter_group_name("tbl-mysql80")
        .send()
        .await?;
    assert_eq!(
        params.db_parameter_groups()[0].db_parameter_group_family(),
        Some("mysql8.0")
    );
    let values = rds
        .describe_db_parameters()
        .db_parameter_group_name("tbl-mysql80")
        .send()
        .await?;
    let value = |name: &str| {
        values
            .parameters()
            .iter()
            .find(|p| p.parameter_name() == Some(name))
            .and_then(|p| p.parameter_value())
            .map(str::to_owned)
    };
    assert_eq!(value("binlog_format").as_deref(), Some("ROW"));
    assert_eq!(value("binlog_row_image").as_deref(), Some("full"));
    let dbs = rds
        .describe_db_instances()
        .db_instance_identifier("tbl-db")
        .send()
        .await?;
    let db = &dbs.db_instances()[0];
    assert_eq!(db.engine(), Some("mysql"));
    assert!(db.engine_version().unwrap().starts_with("8.0"));
    assert_eq!(db.db_instance_class(), Some("db.t3.micro"));
    assert_eq!(db.availability_zone(), Some("us-west-2a"));
    assert_eq!(db.multi_az(), Some(false));
    assert_eq!(db.master_username(), Some("admin"));
    assert_eq!(db.db_name(), Some("test"));
    assert_eq!(db.publicly_accessible(), Some(false));
    assert_eq!(
        db.db_parameter_groups()[0].db_parameter_group_name(),
        Some("tbl-mysql80")
    );
    assert_eq!(
        db.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        Some("tbl-db-subnets")
    );
    assert_eq!(
        db.vpc_security_groups()[0].vpc_security_group_id(),
        Some(sg_id)
    );

    // The password was generated, kept in Secrets Manager, and printed nowhere.
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let secret = secrets
        .get_secret_value()
        .secret_id("tbl/db-master")
        .send()
        .await?;
    let value: serde_json::Value = serde_json::from_str(secret.secret_string().unwrap())?;
    assert_eq!(value["username"], "admin");
    let password = value["password"].as_str().unwrap();
    assert_eq!(password.len(), 32);
    assert!(
        lines
            .iter()
            .chain([&plan.to_string()])
            .all(|l| !l.contains(password))
    );

    let s3 = s3_client(&config);
    for bucket in ["tbl-lake", "tbl-registry"] {
        let block = s3.get_public_access_block().bucket(bucket).send().await?;
        let block = block.public_access_block_configuration().unwrap();
        assert_eq!(
            [
                block.block_public_acls(),
                block.ignore_public_acls(),
                block.block_public_policy(),
                block.restrict_public_buckets()
            ],
            [Some(true); 4],
            "{bucket}"
        );
        let encryption = s3.get_bucket_encryption().bucket(bucket).send().await?;
        let rule = &encryption
            .server_side_encryption_configuration()
            .unwrap()
            .rules()[0];
        let algorithm = rule
            .apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm();
        assert_eq!(algorithm.as_str(), "AES256", "{bucket}");
    }

    // Nothing was uploaded by hand: the plugin zip, the hosts' wrt and the transform are there.
    let listed = s3.list_objects_v2().bucket("tbl-registry").send().await?;
    let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    let [binary, plugin] = keys[..] else {
        panic!("a binary and a plugin zip: {keys:?}")
    };
    let wrt = std::fs::read(shipped.path("wrt"))?;
    assert_eq!(
        binary,
        format!("bin/wrt-{}", hex::encode(sha2::Sha256::digest(&wrt)))
    );
    let uploaded = s3
        .get_object()
        .bucket("tbl-registry")
        .key(binary)
        .send()
        .await?;
    assert_eq!(uploaded.body.collect().await?.into_bytes(), wrt);
    let zip = s3
        .get_object()
        .bucket("tbl-registry")
        .key(plugin)
        .send()
        .await?;
    let zip = zip.body.collect().await?.into_bytes();
    let digest = hex::encode(sha2::Sha256::digest(&zip));
    assert_eq!(
        plugin,
        format!("plugins/debezium-connector-mysql-3.4.0.Final-{digest}.zip"),
        "stored under its content digest"
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec()))?;
    let mut files: Vec<String> = archive
        .file_names()
        .map(|name| name.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut want: Vec<String> = DEBEZIUM_JARS
        .iter()
        .map(|jar| format!("debezium-connector-mysql/{jar}"))
        .chain([
            "debezium-connector-mysql/LICENSE.txt".to_owned(),
            "msk-config-providers/msk-config-providers-0.1.0.jar".to_owned(),
        ])
        .collect();
    want.sort();
    assert_eq!(files, want);
    let mut core = String::new();
    archive
        .by_name("debezium-connector-mysql/debezium-core-3.4.0.Final.jar")?
        .read_to_string(&mut core)?;
    assert_eq!(
        core, "debezium-core-3.4.0.Final.jar",
        "the jar's bytes, unchanged"
    );
    let pointer = s3
        .get_object()
        .bucket("tbl-lake")
        .key("_wrt/transforms/tbl/current.json")
        .send()
        .await?;
    let pointer: serde_json::Value =
        serde_json::from_slice(&pointer.body.collect().await?.into_bytes())?;
    assert_eq!(
        pointer["current"],
        hex::encode(sha2::Sha256::digest(b"\0asm transform"))
    );
    for key in [binary, plugin] {
        assert!(
            lines.iter().any(|l| l.contains(&format!("[{key}]"))),
            "[{key}] missing from {lines:#?}"
        );
    }

    let kafka = server::clients(&config).kafka;
    let clusters = kafka
        .list_clusters_v2()
        .cluster_name_filter("tbl-kafka")
        .send()
        .await?;
    let [cluster] = clusters.cluster_info_list() else {
        panic!("one MSK cluster")
    };
    assert_eq!(cluster.tags().unwrap()["wrt:stack"], "tbl");
    let nodes = cluster
        .provisioned()
        .unwrap()
        .broker_node_group_info()
        .unwrap();
    let mut client_subnets = nodes.client_subnets().to_vec();
    client_subnets.sort();
    assert_eq!(client_subnets, private);
    assert_eq!(nodes.security_groups(), [sg_id.to_owned()]);

    let iam = aws_sdk_iam::Client::new(&config);
    let profile = iam
        .get_instance_profile()
        .instance_profile_name("tbl-host")
        .send()
        .await?;
    assert_eq!(
        profile.instance_profile().unwrap().roles()[0].role_name(),
        "tbl-host"
    );
    let policy = iam
        .get_role_policy()
        .role_name("tbl-host")
        .policy_name("tbl-host")
        .send()
        .await?;
    assert!(policy.policy_document().contains("tbl-lake"));

    let hosts = ec2
        .describe_instances()
        .filters(tag_filter("tbl"))
        .send()
        .await?;
    let [reservation] = hosts.reservations() else {
        panic!("one host")
    };
    let host = &reservation.instances()[0];
    assert_eq!(host.subnet_id(), Some(subnet_id("tbl-private-1").as_str()));
    assert!(
        host.iam_instance_profile()
            .unwrap()
            .arn()
            .unwrap()
            .ends_with("/tbl-host")
    );
    Ok(())
}

fn name_of(tags: &[aws_sdk_ec2::types::Tag]) -> String {
    tags.iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_second_up_changes_nothing() -> Result<()> {
    let moto = Moto::start().await?;
    let shipped = Shipped::new();
    let s = stack(topology("again", &shipped), &moto.config().await, &shipped);
    up(&s).await?;
    let (plan, lines) = up(&s).await?;
    assert_eq!(plan.changes(), 0, "{plan}");
    assert!(
        lines.iter().all(|l| !l.starts_with("creating")
            && !l.starts_with("changing")
            && !l.starts_with("uploading")
            && !l.starts_with("downloading")
            && !l.starts_with("using ")),
        "{lines:#?}"
    );
    assert_eq!(s.plan().await?.changes(), 0);
    Ok(())
}

#[tokio::test]
async fn down_leaves_nothing_with_the_stack_tags() -> Result<()> {
    let moto = Moto::start().await?;
    let shipped = Shipped::new();
    let config = moto.config().await;
    let s = stack(topology("gone", &shipped), &config, &shipped);
    // A neighbour stack in the same account must survive.
    let neighbour = stack(topology("keep", &shipped), &config, &shipped);
    up(&s).await?;
    up(&neighbour).await?;
    let teardown = s.down(&quiet).await?;
    assert_eq!(
        teardown.deleted,
        s.resources().len() - 1,
        "all but the deferred step"
    );
    // The registry and the lake went too: what `up` shipped was in them.
    let s3 = s3_client(&config);
    for bucket in ["gone-lake", "gone-registry"] {
        assert!(
            s3.head_bucket().bucket(bucket).send().await.is_err(),
            "{bucket} is left"
        );
    }

    let after = s.plan().await?;
    assert!(
        after
            .steps
            .iter()
            .all(|st| matches!(st.action, Action::Create | Action::Deferred)),
        "{after}"
    );
    let tagging = aws_sdk_resourcegroupstagging::Client::new(&config);
    let left = tagging
        .get_resources()
        .tag_filters(
            aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                .key("wrt:stack")
                .values("gone")
                .build(),
        )
        .send()
        .await?;
    // Terminated instances and deleted NAT gateways stay listed for a while (on AWS too),
    // in a terminal state; anything else left over is a leak.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    for mapping in left.resource_tag_mapping_list() {
        let arn = mapping.resource_arn().unwrap();
        let id = arn.rsplit('/').next().unwrap();
        let state = if arn.contains(":instance/") {
            let out = ec2.describe_instances().instance_ids(id).send().await?;
            let host = &out.reservations()[0].instances()[0];
            host.state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
        } else if arn.contains(":natgateway/") {
            let out = ec2
                .describe_nat_gateways()
                .nat_gateway_ids(id)
                .send()
                .await?;
            out.nat_gateways()[0].state().map(|s| s.as_str().to_owned())
        } else {
            None
        };
        assert!(
            matches!(state.as_deref(), Some("terminated" | "deleted")),
            "left behind: {arn} ({state:?})"
        );
    }
    assert_eq!(
        neighbour.plan().await?.changes(),
        0,
        "the neighbour stack was touched"
    );
    Ok(())
}

#[tokio::test]
async fn an_interrupted_up_converges_when_run_again() -> Result<()> {
    let moto = Moto::start().await?;
    let shipped = Shipped::new();
    let s = stack(topology("halt", &shipped), &moto.config().await, &shipped);
    // Drop `up` (as Ctrl-C would) once it has started its eighth resource: the NAT gateway.
    let started = Mutex::new(0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop = Mutex::new(Some(stop));
    let progress = |line: &str| {
        if line.starts_with("creating") {
            let mut n = started.lock().unwrap();
            *n += 1;
            if *n == 8 {
                stop.lock().unwrap().take().map(|s| s.send(()));
            }
        }
    };
    tokio::select! {
        result = s.up(&progress) => panic!("up finished before the interruption: {result:?}"),
        _ = stopped => {}
    }
    let half = s.plan().await?;
    let created = half.steps.iter().filter(|st| st.id.is_some()).count();
    assert!((7..=8).contains(&created), "{half}");

    let (plan, _) = up(&s).await?;
    assert!(plan.changes() > 0);
    let after = s.plan().await?;
    assert_eq!(after.changes(), 0, "{after}");
    Ok(())
}

#[tokio::test]
async fn drift_is_planned_as_a_change_and_fixed() -> Result<()> {
    let moto = Moto::start().await?;
    let shipped = Shipped::new();
    let config = moto.config().await;
    let s = stack(topology("drift", &shipped), &config, &shipped);
    up(&s).await?;

    let ec2 = aws_sdk_ec2::Client::new(&config);
    let tables = ec2
        .describe_route_tables()
        .filters(tag_filter("drift"))
        .send()
        .await?;
    let private = tables
        .route_tables()
        .iter()
        .find(|t| name_of(t.tags()) == "drift-private")
        .unwrap();
    ec2.delete_route()
        .route_table_id(private.route_table_id().unwrap())
        .destination_cidr_block("0.0.0.0/0")
        .send()
        .await?;
    let rds = aws_sdk_rds::Client::new(&config);
    rds.modify_db_parameter_group()
        .db_parameter_group_name("drift-mysql80")
        .parameters(
            aws_sdk_rds::types::Parameter::builder()
                .parameter_name("binlog_format")
                .parameter_value("MIXED")
                .apply_method(aws_sdk_rds::types::ApplyMethod::Immediate)
                .build(),
        )
        .send()
        .await?;

    let plan = s.plan().await?;
    let text = plan.to_string();
    assert_eq!(plan.changes(), 2, "{text}");
    assert!(
        text.contains("- 0.0.0.0/0 does not go to the nat gateway"),
        "{text}"
    );
    assert!(
        text.contains("- binlog_format is MIXED, want ROW"),
        "{text}"
    );
    up(&s).await?;
    assert_eq!(s.plan().await?.changes(), 0);
    Ok(())
}

#[tokio::test]
async fn plan_on_an_empty_account_lists_everything_in_dependency_order() -> Result<()> {
    let moto = Moto::start().await?;
    let shipped = Shipped::new();
    // As the CLI test runs it: no MSK Connect, the running wrt, no transform to deploy.
    let t = Topology::parse("[connector]\nenabled = false\n")?;
    let wrt = HostBinary::check(&shipped.path("wrt"), "x86_64", "t3.small")?;
    let stack =
        Stack::with_clients(t, server::clients(&moto.config().await))?.with_host_binary(wrt);
    server::snapshot("plan-empty-account.txt", &stack.plan().await?.to_string());
    Ok(())
}

/// `status` answers "is it running": a host's line carries its instance state and the
/// readiness its wrt reports in the `wrt:ready` tag (set here through the EC2 API, as the
/// host's reporter does), and says `ok` only once the host reported ready.
#[tokio::test]
async fn status_shows_each_hosts_state_and_readiness() -> Result<()> {
    let moto = Moto::start().await?;
    let shipped = Shipped::new();
    let config = moto.config().await;
    let s = stack(topology("ready", &shipped), &config, &shipped);
    up(&s).await?;
    let host_line = |status: String| {
        status
            .lines()
            .find(|l| l.contains("ec2 instance"))
            .unwrap_or_else(|| panic!("no host line in:\n{status}"))
            .to_owned()
    };
    let line = host_line(s.plan().await?.status());
    assert!(
        line.starts_with("waiting  ec2 instance         ready-host-1          i-"),
        "{line}"
    );
    assert!(
        line.ends_with("  running, wrt not ready yet (no report)"),
        "{line}"
    );
    let id = s
        .plan()
        .await?
        .steps
        .into_iter()
        .find_map(|st| match st.resource {
            wrt_infra::Resource::Host(0) => st.id,
            _ => None,
        });
    let id = id.expect("the host's id");

    let ec2 = aws_sdk_ec2::Client::new(&config);
    let report = |value: &'static str| {
        ec2.create_tags()
            .resources(&id)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(wrt_infra::READY_TAG)
                    .value(value)
                    .build(),
            )
            .send()
    };
    report("no the source has not answered yet").await?;
    let line = host_line(s.plan().await?.status());
    assert!(line.starts_with("waiting"), "{line}");
    assert!(
        line.ends_with(&format!(
            "{id}  running, wrt not ready: the source has not answered yet"
        )),
        "{line}"
    );
    report("yes 2026-05-01T10:00:00Z").await?;
    let status = s.plan().await?.status();
    let line = host_line(status.clone());
    assert_eq!(
        line,
        format!(
            "ok       ec2 instance         ready-host-1          {id}  \
             running, wrt ready since 2026-05-01T10:00:00Z"
        )
    );
    // Every other resource is there: the first column answers "is it running".
    assert!(
        status
            .lines()
            .all(|l| l.starts_with("ok") || l.starts_with("deferred")),
        "{status}"
    );

    // A stopped host is not running, whatever it last reported.
    ec2.stop_instances().instance_ids(&id).send().await?;
    let line = host_line(s.plan().await?.status());
    assert!(line.starts_with("waiting"), "{line}");
    assert!(
        line.ends_with(&format!("{id}  stopping")) || line.ends_with(&format!("{id}  stopped")),
        "{line}"
    );
    Ok(())
}

/// With `storage.glue-database`, `up` makes the database and lets the hosts' role make and
/// extend tables in it, and nothing else in Glue; `down` keeps a database that holds
/// tables unless it may purge the lake.
#[tokio::test]
async fn a_glue_database_is_made_for_the_hosts_tables() -> Result<()> {
    let moto = Moto::start().await?;
    let shipped = Shipped::new();
    let config = moto.config().await;
    let mut t = topology("cat", &shipped);
    t.storage.format = wrt_infra::LakeFormat::Parquet;
    t.storage.glue_database = Some("cat_lake".into());
    let s = stack(t.clone(), &config, &shipped);
    let (plan, _) = up(&s).await?;
    assert!(
        plan.to_string()
            .contains("glue database        cat_lake              the lake's Parquet tables"),
        "{plan}"
    );
    let glue = aws_sdk_glue::Client::new(&config);
    let database = glue.get_database().name("cat_lake").send().await?;
    let database = database.database().unwrap();
    assert_eq!(database.parameters().unwrap()["wrt:stack"], "cat");

    let iam = aws_sdk_iam::Client::new(&config);
    let policy = (iam.get_role_policy().role_name("cat-host"))
        .policy_name("cat-host")
        .send()
        .await?;
    let policy = policy.policy_document();
    // IAM hands documents back URL-encoded; moto as they were put.
    let policy: serde_json::Value = serde_json::from_str(policy).or_else(|_| {
        serde_json::from_str(&percent_encoding::percent_decode_str(policy).decode_utf8_lossy())
    })?;
    let glue_statements: Vec<&serde_json::Value> = (policy["Statement"].as_array().unwrap())
        .iter()
        .filter(|st| st["Action"].to_string().contains("glue:"))
        .collect();
    assert_eq!(
        glue_statements,
        [&serde_json::json!({
            "Effect": "Allow",
            "Action": [
                "glue:GetDatabase", "glue:GetTable", "glue:CreateTable", "glue:UpdateTable",
                "glue:GetPartitions", "glue:BatchCreatePartition", "glue:BatchUpdatePartition",
            ],
            "Resource": [
                "arn:aws:glue:us-west-2:*:catalog",
                "arn:aws:glue:us-west-2:*:database/cat_lake",
                "arn:aws:glue:us-west-2:*:table/cat_lake/*",
            ],
        })]
    );
    assert_eq!(s.plan().await?.changes(), 0);

    // A table the hosts made: `down` keeps the database and says how to delete it.
    let table = aws_sdk_glue::types::TableInput::builder()
        .name("customers")
        .build()?;
    (glue
        .create_table()
        .database_name("cat_lake")
        .table_input(table))
    .send()
    .await?;
    let kept = s.down(&quiet).await.unwrap_err().to_string();
    assert!(
        kept.contains("glue database cat_lake: still holds tables (customers, …); rerun `wrt infra down --purge-buckets`"),
        "{kept}"
    );
    assert!(glue.get_database().name("cat_lake").send().await.is_ok());
    stack(t, &config, &shipped)
        .with_purge_buckets(true)
        .down(&quiet)
        .await?;
    assert!(glue.get_database().name("cat_lake").send().await.is_err());
    Ok(())
}
