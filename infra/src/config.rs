//! The topology file (`infra.toml`). Every default is the recipe's value (DESIGN §5), so an
//! empty file describes the recipe's stack with its unsafe choices turned off.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Error, Result};

/// The whole stack: what `wrt infra` provisions, finds by tags and tears down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Topology {
    /// Names every resource and is the value of the `wrt:stack` tag that marks them as ours.
    pub stack: String,
    /// The AWS region everything is created in.
    pub region: String,
    /// Send every AWS call here instead of the public endpoints (moto, LocalStack).
    pub endpoint_url: Option<String>,
    /// VPC, subnets, gateways, route tables and the security group.
    pub network: Network,
    /// The RDS MySQL source database and its password secret.
    pub database: Database,
    /// The MSK (Kafka) cluster Debezium writes to.
    pub kafka: Kafka,
    /// The Debezium connector on MSK Connect.
    pub connector: Connector,
    /// The S3 buckets.
    pub storage: Storage,
    /// The EC2 hosts that run wrt.
    pub hosts: Hosts,
}

/// The network the recipe builds by hand in the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Network {
    /// The VPC's IPv4 block.
    pub vpc_cidr: Cidr,
    /// Public subnets (the NAT gateway goes in the first); routed to the internet gateway.
    pub public_subnets: Vec<Subnet>,
    /// Private subnets (database, brokers, hosts); routed to the NAT gateway.
    pub private_subnets: Vec<Subnet>,
}

/// One subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Subnet {
    /// The subnet's IPv4 block, inside the VPC's.
    pub cidr: Cidr,
    /// The availability zone, in the stack's region (e.g. `us-west-2a`).
    pub az: String,
}

/// The Debezium source database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Database {
    /// MySQL engine version; `8.0` lets RDS choose the current 8.0 minor (the recipe's 8.0.23 is retired).
    pub engine_version: String,
    /// The parameter group family, matching the engine version.
    pub parameter_family: String,
    /// The instance class.
    pub instance_class: String,
    /// Storage in GiB.
    pub allocated_storage_gib: i32,
    /// The availability zone of the single-AZ instance (one of the private subnets').
    pub availability_zone: String,
    /// The master user name.
    pub master_username: String,
    /// The database created with the instance.
    pub database_name: String,
    /// `binlog_format` in the parameter group; Debezium needs `ROW`.
    pub binlog_format: String,
    /// `binlog_row_image` in the parameter group; Debezium needs `full`.
    pub binlog_row_image: String,
    /// Hours RDS keeps binlogs (`mysql.rds_set_configuration`); long enough for the connector to catch up.
    pub binlog_retention_hours: u32,
    /// UNSAFE (the recipe's choice): give the instance a public address. Off by default.
    pub publicly_accessible: bool,
    /// UNSAFE (the recipe used a literal): use this master password instead of a generated one.
    /// It is still stored in Secrets Manager. Unset by default.
    pub literal_password: Option<String>,
    /// Take a final snapshot when `down` deletes the instance.
    pub final_snapshot: bool,
}

/// The MSK cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kafka {
    /// The Apache Kafka version.
    pub kafka_version: String,
    /// The broker instance type.
    pub broker_instance_type: String,
    /// Brokers per private subnet (MSK needs a multiple of the subnet count).
    pub brokers_per_subnet: i32,
    /// EBS storage per broker in GiB.
    pub volume_gib: i32,
}

/// The Debezium MySQL connector on MSK Connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Connector {
    /// Create the connector (off for endpoints without MSK Connect, such as moto).
    pub enabled: bool,
    /// The Debezium MySQL connector version `up` puts in the custom plugin, from Maven Central
    /// (`io.debezium:debezium-connector-mysql:<version>:plugin@zip`, checked against its
    /// published SHA-1). Default: the version the local stack runs (tests/stack/pom.xml).
    pub debezium_version: String,
    /// The Maven repository the connector is downloaded from.
    pub maven_repository: String,
    /// The Secrets Manager config provider that lets the connector read the master password
    /// from `<stack>/db-master` (none is published on Maven Central; see infra/README.md).
    pub config_provider: ConfigProvider,
    /// The Kafka Connect version MSK Connect runs: `3.7.x` (Java 17, which Debezium 3 needs)
    /// or `2.7.1` (Java 11, Debezium 2 only).
    pub kafka_connect_version: String,
    /// Debezium's `topic.prefix`: topics are `<prefix>.<db>.<table>`.
    pub topic_prefix: String,
    /// Debezium's `database.server.id`, unique among the database's replicas.
    pub server_id: u32,
    /// MSK Connect capacity units per worker.
    pub mcu_count: i32,
    /// Number of workers.
    pub workers: i32,
}

/// A zip of jars to put in the custom plugin, downloaded and checked against a pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigProvider {
    /// Where to download it (`https://` or `file://`). Default: the MSK config providers
    /// release that AWS's MSK Connect tutorial uses.
    pub url: String,
    /// Its SHA-256 (hex). Required before `up` assembles a plugin: the release is published
    /// without a checksum wrt could check.
    pub sha256: Option<String>,
}

/// The S3 buckets. Names are global: the defaults derive from the stack name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Storage {
    /// The data-lake bucket wrt writes to; default `<stack>-lake`.
    pub lake_bucket: Option<String>,
    /// The bucket holding transforms, the wrt binary and the connector plugin; default `<stack>-registry`.
    pub registry_bucket: Option<String>,
    /// What the hosts write to the lake: `jsonl` (gzip JSON Lines) or `parquet`.
    pub format: LakeFormat,
    /// A Glue Data Catalog database `up` makes for the lake's Parquet tables, which the
    /// hosts then create and keep up to date; none when unset.
    pub glue_database: Option<String>,
}

/// The lake's file format, as the hosts' `[batch] format` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LakeFormat {
    #[default]
    Jsonl,
    Parquet,
}

impl LakeFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LakeFormat::Jsonl => "jsonl",
            LakeFormat::Parquet => "parquet",
        }
    }
}

/// The EC2 hosts that run wrt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Hosts {
    /// How many hosts, spread over the private subnets.
    pub count: usize,
    /// The instance type.
    pub instance_type: String,
    /// The AMI; when unset, the newest Amazon-owned image matching `ami-name`.
    pub ami_id: Option<String>,
    /// Name pattern of the Amazon-owned AMI to use when `ami-id` is unset.
    pub ami_name: String,
    /// Arguments of `wrt` in the host's service unit.
    pub wrt_args: String,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            stack: "wrt".into(),
            region: "us-west-2".into(),
            endpoint_url: None,
            network: Network::default(),
            database: Database::default(),
            kafka: Kafka::default(),
            connector: Connector::default(),
            storage: Storage::default(),
            hosts: Hosts::default(),
        }
    }
}

impl Default for Network {
    fn default() -> Self {
        let subnet = |cidr: &str, az: &str| Subnet {
            cidr: cidr.parse().expect("a valid default CIDR"),
            az: az.into(),
        };
        Self {
            vpc_cidr: "10.0.0.0/16".parse().expect("a valid default CIDR"),
            public_subnets: vec![
                subnet("10.0.1.0/24", "us-west-2a"),
                subnet("10.0.2.0/24", "us-west-2c"),
            ],
            private_subnets: vec![
                subnet("10.0.3.0/24", "us-west-2a"),
                subnet("10.0.4.0/24", "us-west-2c"),
            ],
        }
    }
}

impl Default for Database {
    fn default() -> Self {
        Self {
            engine_version: "8.0".into(),
            parameter_family: "mysql8.0".into(),
            instance_class: "db.t3.micro".into(),
            allocated_storage_gib: 20,
            availability_zone: "us-west-2a".into(),
            master_username: "admin".into(),
            database_name: "test".into(),
            binlog_format: "ROW".into(),
            binlog_row_image: "full".into(),
            binlog_retention_hours: 24,
            publicly_accessible: false,
            literal_password: None,
            final_snapshot: true,
        }
    }
}

impl Default for Kafka {
    fn default() -> Self {
        Self {
            kafka_version: "3.6.0".into(),
            broker_instance_type: "kafka.t3.small".into(),
            brokers_per_subnet: 1,
            volume_gib: 100,
        }
    }
}

impl Default for Connector {
    fn default() -> Self {
        Self {
            enabled: true,
            debezium_version: stack_debezium_version().into(),
            maven_repository: "https://repo1.maven.org/maven2".into(),
            config_provider: ConfigProvider::default(),
            kafka_connect_version: "3.7.x".into(),
            topic_prefix: "wrt".into(),
            server_id: 184054,
            mcu_count: 1,
            workers: 1,
        }
    }
}

impl Default for ConfigProvider {
    fn default() -> Self {
        Self {
            url: "https://github.com/aws-samples/msk-config-providers/releases/download/r0.1.0/\
                  msk-config-providers-0.1.0-with-dependencies.zip"
                .into(),
            sha256: None,
        }
    }
}

/// The Debezium version the local stack pins (tests/stack/pom.xml), read at build time so
/// the stack and the AWS connector cannot drift apart.
pub fn stack_debezium_version() -> &'static str {
    const POM: &str = include_str!("../../tests/stack/pom.xml");
    const TAG: &str = "<debezium.version>";
    let start = POM.find(TAG).expect("the pom pins debezium.version") + TAG.len();
    let len = POM[start..].find('<').expect("the element closes");
    &POM[start..start + len]
}

/// Whether an EC2 instance type is AWS Graviton (arm64): a `g` right after the family's
/// generation digit (`t4g`, `m7g`, `c7gn`, `r8gd`).
fn is_graviton(instance_type: &str) -> bool {
    let family = instance_type.split('.').next().unwrap_or_default();
    family
        .find(|c: char| c.is_ascii_digit())
        .is_some_and(|at| family[at + 1..].starts_with('g'))
}

impl Default for Hosts {
    fn default() -> Self {
        Self {
            count: 1,
            instance_type: "t3.small".into(),
            ami_id: None,
            ami_name: "al2023-ami-2023.*-x86_64".into(),
            wrt_args: "run --config /etc/wrt/wrt.toml".into(),
        }
    }
}

impl Topology {
    /// Reads a topology file; a missing key takes its default.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            Error::Parse { message, .. } => Error::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses a topology from TOML text.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Parse {
            path: "<inline>".into(),
            message: e.to_string(),
        })
    }

    /// The data-lake bucket's name.
    pub fn lake_bucket(&self) -> String {
        self.storage
            .lake_bucket
            .clone()
            .unwrap_or_else(|| format!("{}-lake", self.stack))
    }

    /// The hosts' CPU architecture, as Linux names it: `aarch64` or `x86_64`.
    pub fn host_architecture(&self) -> &'static str {
        if is_graviton(&self.hosts.instance_type) {
            "aarch64"
        } else {
            "x86_64"
        }
    }

    /// The registry bucket's name.
    pub fn registry_bucket(&self) -> String {
        self.storage
            .registry_bucket
            .clone()
            .unwrap_or_else(|| format!("{}-registry", self.stack))
    }

    /// Checks everything that can be checked without calling AWS; reports every problem.
    pub fn validate(&self) -> Result<()> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, value: &dyn fmt::Display, problem: &str, fix: &str| {
            errors.push(ConfigError {
                field: field.into(),
                value: value.to_string(),
                problem: problem.into(),
                fix: fix.into(),
            });
        };

        let stack_ok = self.stack.len() <= 20
            && self.stack.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .stack
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.stack.ends_with('-')
            && !self.stack.contains("--");
        if !stack_ok {
            bad(
                "stack",
                &self.stack,
                "is not a valid stack name",
                "use 1-20 lowercase letters, digits and single hyphens, starting with a letter \
                 (it becomes part of RDS, MSK and S3 names)",
            );
        }
        let region_ok = !self.region.is_empty()
            && self.region.ends_with(|c: char| c.is_ascii_digit())
            && self
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            bad(
                "region",
                &self.region,
                "is not a region name",
                "use a region such as us-west-2",
            );
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bad(
                "endpoint-url",
                url,
                "is not an http(s) URL",
                "use e.g. http://127.0.0.1:5000, or leave it unset for AWS",
            );
        }

        let net = &self.network;
        let mut seen: Vec<(String, Cidr)> = Vec::new();
        for (tier, subnets) in [
            ("public-subnets", &net.public_subnets),
            ("private-subnets", &net.private_subnets),
        ] {
            if subnets.len() < 2 {
                bad(
                    &format!("network.{tier}"),
                    &subnets.len(),
                    "needs at least two subnets",
                    "list one subnet in each of two availability zones (RDS and MSK need two)",
                );
            }
            let mut azs: Vec<&str> = subnets.iter().map(|s| s.az.as_str()).collect();
            azs.sort_unstable();
            azs.dedup();
            if subnets.len() >= 2 && azs.len() < 2 {
                bad(
                    &format!("network.{tier}"),
                    &azs.join(","),
                    "are all in one availability zone",
                    "put the subnets in at least two availability zones",
                );
            }
            for (i, subnet) in subnets.iter().enumerate() {
                let field = format!("network.{tier}[{i}]");
                if !net.vpc_cidr.contains(&subnet.cidr) {
                    bad(
                        &format!("{field}.cidr"),
                        &subnet.cidr,
                        &format!("is not inside the VPC's {}", net.vpc_cidr),
                        "pick a block inside network.vpc-cidr",
                    );
                }
                if let Some((other, _)) = seen.iter().find(|(_, c)| c.overlaps(&subnet.cidr)) {
                    bad(
                        &format!("{field}.cidr"),
                        &subnet.cidr,
                        &format!("overlaps {other}"),
                        "give every subnet its own block",
                    );
                }
                seen.push((field.clone(), subnet.cidr));
                if !is_zone_of(&subnet.az, &self.region) {
                    bad(
                        &format!("{field}.az"),
                        &subnet.az,
                        &format!("is not an availability zone of {}", self.region),
                        &format!("use the region name plus a letter, e.g. {}a", self.region),
                    );
                }
            }
        }
        if !(16..=28).contains(&net.vpc_cidr.prefix) {
            bad(
                "network.vpc-cidr",
                &net.vpc_cidr,
                "has a prefix outside /16../28",
                "AWS VPCs are between /16 and /28",
            );
        }

        let db = &self.database;
        if !net
            .private_subnets
            .iter()
            .any(|s| s.az == db.availability_zone)
        {
            bad(
                "database.availability-zone",
                &db.availability_zone,
                "has no private subnet",
                "use the availability zone of one of network.private-subnets",
            );
        }
        if db.binlog_format != "ROW" {
            bad(
                "database.binlog-format",
                &db.binlog_format,
                "cannot feed Debezium",
                "set it to ROW",
            );
        }
        if db.binlog_row_image != "full" {
            bad(
                "database.binlog-row-image",
                &db.binlog_row_image,
                "drops column values Debezium needs",
                "set it to full",
            );
        }
        if !(1..=168).contains(&db.binlog_retention_hours) {
            bad(
                "database.binlog-retention-hours",
                &db.binlog_retention_hours,
                "is outside what RDS accepts",
                "use 1 to 168 hours",
            );
        }
        if !db
            .master_username
            .starts_with(|c: char| c.is_ascii_alphabetic())
            || db.master_username.len() > 16
        {
            bad(
                "database.master-username",
                &db.master_username,
                "is not a valid MySQL master user",
                "use 1-16 letters and digits, starting with a letter",
            );
        }
        if db.database_name.is_empty()
            || !db
                .database_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            bad(
                "database.database-name",
                &db.database_name,
                "is not a valid database name",
                "use letters, digits and underscores",
            );
        }
        if let Some(password) = &db.literal_password
            && (password.len() < 8 || password.contains(['/', '@', '"', ' ']))
        {
            // The value itself is a secret: never echo it.
            bad(
                "database.literal-password",
                &"<redacted>",
                "is not accepted by RDS",
                "use at least 8 characters without / @ \" or spaces, or leave it unset to generate one",
            );
        }
        if db.allocated_storage_gib < 20 {
            bad(
                "database.allocated-storage-gib",
                &db.allocated_storage_gib,
                "is below the RDS MySQL minimum",
                "use at least 20",
            );
        }

        if self.kafka.brokers_per_subnet < 1 {
            bad(
                "kafka.brokers-per-subnet",
                &self.kafka.brokers_per_subnet,
                "must be at least 1",
                "use 1 or more",
            );
        }
        if self.connector.mcu_count < 1 || self.connector.workers < 1 {
            bad(
                "connector.mcu-count/workers",
                &format!("{}/{}", self.connector.mcu_count, self.connector.workers),
                "must be at least 1",
                "use 1 or more",
            );
        }
        for (field, name) in [
            ("storage.lake-bucket", self.lake_bucket()),
            ("storage.registry-bucket", self.registry_bucket()),
        ] {
            if !is_bucket_name(&name) {
                bad(
                    field,
                    &name,
                    "is not a valid S3 bucket name",
                    "use 3-63 lowercase letters, digits, hyphens and dots",
                );
            }
        }
        if self.lake_bucket() == self.registry_bucket() {
            bad(
                "storage.registry-bucket",
                &self.registry_bucket(),
                "is the lake bucket",
                "give the registry its own bucket",
            );
        }
        if let Some(db) = &self.storage.glue_database {
            if !is_glue_name(db) {
                bad(
                    "storage.glue-database",
                    db,
                    "is not a name Athena can query",
                    "use 1-255 lowercase letters, digits and underscores, e.g. `shop_lake`",
                );
            }
            if self.storage.format != LakeFormat::Parquet {
                bad(
                    "storage.glue-database",
                    db,
                    "describes Parquet tables, and the lake is JSON Lines",
                    "add `format = \"parquet\"` to `[storage]`, or remove `glue-database`",
                );
            }
        }
        let c = &self.connector;
        let major: u32 = (c.debezium_version.split('.').next())
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major == 0 {
            bad(
                "connector.debezium-version",
                &c.debezium_version,
                "is not a Debezium release",
                "use a version as Maven Central names it, e.g. 3.4.0.Final",
            );
        }
        if !matches!(c.kafka_connect_version.as_str(), "3.7.x" | "2.7.1") {
            bad(
                "connector.kafka-connect-version",
                &c.kafka_connect_version,
                "is not a version MSK Connect offers",
                "use 3.7.x (or 2.7.1 for Debezium 2)",
            );
        } else if major >= 3 && c.kafka_connect_version == "2.7.1" {
            bad(
                "connector.kafka-connect-version",
                &c.kafka_connect_version,
                "runs Java 11, and Debezium 3 needs Java 17",
                "use 3.7.x",
            );
        }
        if !["https://", "http://", "file://"]
            .iter()
            .any(|scheme| c.config_provider.url.starts_with(scheme))
        {
            bad(
                "connector.config-provider.url",
                &c.config_provider.url,
                "is not an https://, http:// or file:// URL",
                "point it at the provider's zip",
            );
        }
        if let Some(sum) = &c.config_provider.sha256
            && !(sum.len() == 64 && sum.chars().all(|ch| ch.is_ascii_hexdigit()))
        {
            bad(
                "connector.config-provider.sha256",
                sum,
                "is not a SHA-256",
                "use the 64 hex digits `sha256sum` prints",
            );
        }
        let arch = match self.host_architecture() {
            "aarch64" => "arm64",
            other => other,
        };
        if self.hosts.ami_id.is_none()
            && !self.hosts.ami_name.is_empty()
            && !self.hosts.ami_name.ends_with(arch)
        {
            bad(
                "hosts.ami-name",
                &self.hosts.ami_name,
                &format!(
                    "does not end in {arch}, the architecture of {}",
                    self.hosts.instance_type
                ),
                &format!("use an {arch} image name, e.g. al2023-ami-2023.*-{arch}"),
            );
        }
        if self.hosts.ami_id.is_none() && self.hosts.ami_name.is_empty() {
            bad(
                "hosts.ami-name",
                &"",
                "is empty and hosts.ami-id is unset",
                "set one of them",
            );
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(errors))
        }
    }
}

fn is_zone_of(az: &str, region: &str) -> bool {
    az.strip_prefix(region)
        .is_some_and(|rest| rest.len() == 1 && rest.chars().all(|c| c.is_ascii_lowercase()))
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Glue takes more, but Athena reads only lowercase names of letters, digits and `_`.
fn is_glue_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// An IPv4 block such as `10.0.0.0/16`, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether `other` lies entirely inside this block.
    pub fn contains(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && u32::from(other.addr) & self.mask() == u32::from(self.addr)
    }

    /// Whether the two blocks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR block: expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix must be 0 to 32"))?;
        let cidr = Cidr { addr, prefix };
        if u32::from(addr) & !cidr.mask() != 0 {
            return Err(format!(
                "{s:?} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(addr) & cidr.mask())
            ));
        }
        Ok(cidr)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(toml: &str) -> String {
        let topology = Topology::parse(toml).expect("parses");
        topology.validate().expect_err("is invalid").to_string()
    }

    #[test]
    fn defaults_are_the_recipe_table() {
        let t = Topology::parse("").unwrap();
        assert_eq!(t, Topology::default());
        t.validate().unwrap();
        assert_eq!(t.region, "us-west-2");
        let cidrs = |s: &[Subnet]| {
            s.iter()
                .map(|s| format!("{} {}", s.cidr, s.az))
                .collect::<Vec<_>>()
        };
        assert_eq!(t.network.vpc_cidr.to_string(), "10.0.0.0/16");
        assert_eq!(
            cidrs(&t.network.public_subnets),
            ["10.0.1.0/24 us-west-2a", "10.0.2.0/24 us-west-2c"]
        );
        assert_eq!(
            cidrs(&t.network.private_subnets),
            ["10.0.3.0/24 us-west-2a", "10.0.4.0/24 us-west-2c"]
        );
        let db = &t.database;
        assert_eq!(
            (
                db.parameter_family.as_str(),
                db.binlog_format.as_str(),
                db.binlog_row_image.as_str()
            ),
            ("mysql8.0", "ROW", "full")
        );
        assert_eq!(
            (
                db.instance_class.as_str(),
                db.master_username.as_str(),
                db.database_name.as_str()
            ),
            ("db.t3.micro", "admin", "test")
        );
        assert!(db.engine_version.starts_with("8.0"));
        // The recipe's unsafe choices are off.
        assert!(!db.publicly_accessible);
        assert_eq!(db.literal_password, None);
    }

    #[test]
    fn every_value_is_overridable() {
        let t = Topology::parse(
            r#"
            stack = "demo"
            region = "eu-west-1"
            [network]
            vpc-cidr = "172.16.0.0/16"
            public-subnets = [{ cidr = "172.16.0.0/24", az = "eu-west-1a" }, { cidr = "172.16.1.0/24", az = "eu-west-1b" }]
            private-subnets = [{ cidr = "172.16.2.0/24", az = "eu-west-1a" }, { cidr = "172.16.3.0/24", az = "eu-west-1b" }]
            [database]
            availability-zone = "eu-west-1b"
            publicly-accessible = true
            instance-class = "db.t3.small"
            "#,
        )
        .unwrap();
        t.validate().unwrap();
        assert_eq!(t.lake_bucket(), "demo-lake");
        assert!(t.database.publicly_accessible);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Topology::parse("[network]\nvpc-cdir = \"10.0.0.0/16\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `vpc-cdir`"),
            "{err}"
        );
    }

    #[test]
    fn bad_cidrs_are_rejected_when_parsed() {
        let err = Topology::parse("[network]\nvpc-cidr = \"10.0.0.1/16\"").unwrap_err();
        assert!(
            err.to_string().contains("did you mean 10.0.0.0/16"),
            "{err}"
        );
        let err = Topology::parse("[network]\nvpc-cidr = \"10.0.0.0/33\"").unwrap_err();
        assert!(err.to_string().contains("prefix must be 0 to 32"), "{err}");
    }

    #[test]
    fn validation_names_field_value_and_fix() {
        let err = invalid(
            r#"[network]
            private-subnets = [{ cidr = "10.1.3.0/24", az = "us-west-2a" }, { cidr = "10.0.1.0/25", az = "us-east-1c" }]"#,
        );
        assert_eq!(
            err,
            "the topology is invalid:\n  \
             network.private-subnets[0].cidr = 10.1.3.0/24: is not inside the VPC's 10.0.0.0/16; pick a block inside network.vpc-cidr\n  \
             network.private-subnets[1].cidr = 10.0.1.0/25: overlaps network.public-subnets[0]; give every subnet its own block\n  \
             network.private-subnets[1].az = us-east-1c: is not an availability zone of us-west-2; use the region name plus a letter, e.g. us-west-2a"
        );
    }

    #[test]
    fn validation_covers_database_and_names() {
        let err = invalid(
            r#"stack = "Bad_Name"
            [database]
            binlog-format = "MIXED"
            availability-zone = "us-west-2b"
            literal-password = "Bespin 12!"
            "#,
        );
        for needle in [
            "stack = Bad_Name",
            "database.binlog-format = MIXED: cannot feed Debezium; set it to ROW",
            "database.availability-zone = us-west-2b: has no private subnet",
            "database.literal-password = <redacted>",
            "storage.lake-bucket = Bad_Name-lake",
        ] {
            assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
        }
        assert!(!err.contains("Bespin"), "the password leaked:\n{err}");
    }

    #[test]
    fn a_glue_database_needs_parquet_and_a_name_athena_reads() {
        let err = invalid("[storage]\nglue-database = \"Shop-Lake\"");
        for needle in [
            "storage.glue-database = Shop-Lake: is not a name Athena can query",
            "storage.glue-database = Shop-Lake: describes Parquet tables, and the lake is JSON Lines; add `format = \"parquet\"`",
        ] {
            assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
        }
        let t = Topology::parse("[storage]\nformat = \"parquet\"\nglue-database = \"shop_lake\"")
            .unwrap();
        t.validate().unwrap();
        assert_eq!(t.storage.format, LakeFormat::Parquet);
    }

    #[test]
    fn subnets_must_span_two_zones() {
        let err = invalid(
            r#"[network]
            public-subnets = [{ cidr = "10.0.1.0/24", az = "us-west-2a" }, { cidr = "10.0.2.0/24", az = "us-west-2a" }]"#,
        );
        assert!(
            err.contains("network.public-subnets = us-west-2a: are all in one availability zone"),
            "{err}"
        );
    }

    #[test]
    fn the_connector_follows_the_local_stack_and_fits_msk_connect() {
        let t = Topology::default();
        let pom = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/stack/pom.xml"
        ))
        .unwrap();
        let pinned = format!(
            "<debezium.version>{}</debezium.version>",
            t.connector.debezium_version
        );
        assert!(pom.contains(&pinned), "{pinned} is not in the stack's pom");
        assert_eq!(t.connector.kafka_connect_version, "3.7.x");
        let err = invalid("[connector]\nkafka-connect-version = \"2.7.1\"\n");
        assert!(
            err.contains("connector.kafka-connect-version = 2.7.1: runs Java 11, and Debezium 3 needs Java 17; use 3.7.x"),
            "{err}"
        );
        let err = invalid("[hosts]\ninstance-type = \"t4g.small\"\n");
        assert!(
            err.contains("hosts.ami-name = al2023-ami-2023.*-x86_64: does not end in arm64"),
            "{err}"
        );
        let t = Topology::parse(
            "[hosts]\ninstance-type = \"m7g.large\"\nami-name = \"al2023-ami-2023.*-arm64\"\n",
        )
        .unwrap();
        t.validate().unwrap();
        assert_eq!(t.host_architecture(), "aarch64");
        assert_eq!(Topology::default().host_architecture(), "x86_64");
    }

    #[test]
    fn cidr_containment() {
        let vpc: Cidr = "10.0.0.0/16".parse().unwrap();
        assert!(vpc.contains(&"10.0.255.0/24".parse().unwrap()));
        assert!(!vpc.contains(&"10.1.0.0/24".parse().unwrap()));
        assert!(!vpc.contains(&"10.0.0.0/8".parse().unwrap()));
        assert!(vpc.overlaps(&"10.0.0.0/8".parse().unwrap()));
    }
}
