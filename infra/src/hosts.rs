//! EC2 hosts that run wrt, and the user data that installs it and sets binlog retention.

use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataOptionsRequest,
    InstanceType, ResourceType,
};
use base64::Engine;
use serde::Serialize;

use crate::aws::{wait_until, waited};
use crate::config::Topology;
use crate::error::{Error, Result, aws};
use crate::plan::{Health, Readiness, Resource, Tier};
use crate::stack::{Found, Ids, Stack};

/// What a host's first boot needs to know, found when the hosts are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// Key of the wrt binary in the registry bucket (`bin/wrt-<sha256>`).
    pub wrt_binary_key: String,
    pub db_endpoint: String,
    pub secret_arn: String,
    pub kafka_arn: String,
}

/// Where the first boot puts the deployed transform: `wrt run` falls back to it if the
/// registry's version ever fails to load.
const TRANSFORM_PATH: &str = "/opt/wrt/transform.wasm";

/// Stands for the brokers in the pipeline file until the first boot knows them.
const BROKERS_PLACEHOLDER: &str = "@MSK_IAM_BOOTSTRAP_BROKERS@";

/// wrt's admin server on the hosts: its default address, written out in the pipeline file
/// because the readiness reporter polls it.
const ADMIN_LISTEN: &str = "127.0.0.1:9464";

/// The tag each host keeps on its own instance, `yes <UTC time it became ready>` or
/// `no <reason>`: `wrt infra status` reads it through the EC2 API, so the hosts need no
/// inbound port.
pub const READY_TAG: &str = "wrt:ready";

/// `/usr/local/bin/wrt-ready <readyz URL>`: polls wrt's `/readyz` on loopback and writes the
/// instance's readiness tag only when the answer changes (a write per poll would be
/// throttled, and the time in `yes <time>` says since when).
const READY_REPORTER: &str = r#"#!/bin/bash
set -u
readyz=$1
imds() {
  local token
  token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') &&
    curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
until instance=$(imds instance-id); do sleep 5; done
reported=
while true; do
  if [ ! -e /etc/systemd/system/wrt.service ]; then
    state='no first boot not finished: see /var/log/cloud-init-output.log'
  elif ! service=$(systemctl is-active wrt.service); then
    state="no wrt.service is $service"
  elif answer=$(curl -s --max-time 5 --fail-with-body "$readyz"); then
    state=yes
  else
    state="no ${answer#not ready: }"
    [ -n "$answer" ] || state="no wrt does not answer on $readyz"
  fi
  # Tag values allow few characters in every service: keep those, on one short line.
  state=$(printf '%s' "$state" | tr -c 'A-Za-z0-9 +=._:/@-' ' ' | tr -s ' ' | cut -c 1-200)
  state=${state% }
  if [ "$state" != "$reported" ]; then
    value=$state
    if [ "$state" = yes ]; then value="yes $(date -u +%Y-%m-%dT%H:%M:%SZ)"; fi
    aws ec2 create-tags --resources "$instance" \
      --tags "[{\"Key\": \"wrt:ready\", \"Value\": \"$value\"}]" && reported=$state
  fi
  sleep 15
done
"#;

/// `/etc/wrt/wrt.toml` in the format of docs/configuration.md; the shape mirrors the
/// runtime's `PipelineConfig` (wrt-infra cannot depend on `wrt`, which depends on it).
#[derive(Serialize)]
struct PipelineFile<'a> {
    name: &'a str,
    source: PipelineSource<'a>,
    transform: PipelineTransform,
    sink: PipelineSink<'a>,
    batch: PipelineBatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog: Option<PipelineCatalog<'a>>,
    /// Present and empty: `wrt deploy` ships new versions, which hosts hot-swap.
    registry: Defaults,
    /// The admin server on loopback, for the readiness reporter and metrics.
    admin: Admin,
}

#[derive(Serialize)]
struct Admin {
    listen: &'static str,
}

/// A section whose every key takes wrt's default.
#[derive(Serialize)]
struct Defaults {}

#[derive(Serialize)]
struct PipelineSource<'a> {
    kind: &'static str,
    brokers: &'a str,
    topics: [String; 2],
    auth: MskIam<'a>,
}

#[derive(Serialize)]
struct MskIam<'a> {
    mechanism: &'static str,
    region: &'a str,
}

#[derive(Serialize)]
struct PipelineTransform {
    path: &'static str,
}

#[derive(Serialize)]
struct PipelineSink<'a> {
    kind: &'static str,
    bucket: String,
    region: &'a str,
}

#[derive(Serialize)]
struct PipelineBatch {
    format: &'static str,
}

#[derive(Serialize)]
struct PipelineCatalog<'a> {
    kind: &'static str,
    database: &'a str,
    region: &'a str,
}

/// The hosts' pipeline: Debezium's topics on MSK over IAM → the registry's transform → the
/// lake bucket.
fn pipeline_toml(t: &Topology, brokers: &str) -> String {
    let prefix = &t.connector.topic_prefix;
    let file = PipelineFile {
        name: &t.stack,
        source: PipelineSource {
            kind: "kafka",
            brokers,
            // Table topics are `<prefix>.<db>.<table>`; schema changes go to `<prefix>`.
            topics: [
                format!("^{}\\..*", prefix.replace('.', "\\.")),
                prefix.clone(),
            ],
            auth: MskIam {
                mechanism: "msk-iam",
                region: &t.region,
            },
        },
        transform: PipelineTransform {
            path: TRANSFORM_PATH,
        },
        sink: PipelineSink {
            kind: "s3",
            bucket: t.lake_bucket(),
            region: &t.region,
        },
        batch: PipelineBatch {
            format: t.storage.format.as_str(),
        },
        catalog: (t.storage.glue_database.as_deref()).map(|database| PipelineCatalog {
            kind: "glue",
            database,
            region: &t.region,
        }),
        registry: Defaults {},
        admin: Admin {
            listen: ADMIN_LISTEN,
        },
    };
    toml::to_string(&file).expect("the pipeline file serializes")
}

/// The pipeline file the hosts run (`/etc/wrt/wrt.toml`), with a placeholder for the
/// brokers the first boot looks up.
pub fn host_pipeline(t: &Topology) -> String {
    pipeline_toml(t, BROKERS_PLACEHOLDER)
}

/// The first-boot script: start the readiness reporter, install wrt and the transform from
/// the registry bucket, write the pipeline file, set RDS binlog retention (SQL: RDS has no
/// API for it), and run wrt under systemd. It holds no secret: the password is read from
/// Secrets Manager on the host.
pub fn user_data(t: &Topology, facts: &HostFacts) -> String {
    let db = &t.database;
    format!(
        r#"#!/bin/bash
# wrt host for stack {stack}, written by `wrt infra up`.
set -euo pipefail
export AWS_REGION={region}
install -d /etc/wrt /opt/wrt

# Readiness, as this instance's {tag} tag, reported from here on: `wrt infra status` then
# tells how far the host got without any inbound port.
cat > /usr/local/bin/wrt-ready <<'READY'
{reporter}READY
chmod 0755 /usr/local/bin/wrt-ready
cat > /etc/systemd/system/wrt-ready.service <<UNIT
[Unit]
Description=wrt: report readiness as this instance's {tag} tag
After=network-online.target
Wants=network-online.target

[Service]
Environment=AWS_REGION={region}
ExecStart=/usr/local/bin/wrt-ready http://{admin}/readyz
Restart=always
RestartSec=30

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now wrt-ready.service

aws s3 cp s3://{registry}/{binary} /usr/local/bin/wrt
chmod 0755 /usr/local/bin/wrt
# The transform is deployed through the registry (`wrt infra up --transform`, `wrt deploy`),
# maybe after `up`: wait for the pointer rather than fail the boot.
until current=$(aws s3 cp s3://{lake}/{transforms}current.json - \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["current"])'); do
  sleep 30
done
aws s3 cp "s3://{lake}/{transforms}$current.wasm" {transform}
chmod 0644 {transform}

# The brokers are resolved here, not when `up` renders this script: `up` creates the hosts
# while MSK is still being created (20-40 minutes; it waits only before the connector), so
# they are not known yet. Port 9098 is the IAM listener.
until brokers=$(aws kafka get-bootstrap-brokers --cluster-arn {kafka} \
    --query BootstrapBrokerStringSaslIam --output text) && [ -n "$brokers" ] && [ "$brokers" != None ]; do
  sleep 30
done
# Quoted: the file is written exactly as rendered, then the brokers go in.
cat > /etc/wrt/wrt.toml <<'TOML'
{pipeline}TOML
sed -i "s|{placeholder}|$brokers|" /etc/wrt/wrt.toml
chmod 0644 /etc/wrt/wrt.toml

# Binlog retention long enough for the connector to catch up after a pause.
dnf install -y mariadb105
MYSQL_PWD=$(aws secretsmanager get-secret-value --secret-id {secret} --query SecretString \
  --output text | python3 -c 'import json, sys; print(json.load(sys.stdin)["password"])')
export MYSQL_PWD
until mysql -h {endpoint} -u {user} \
    -e "call mysql.rds_set_configuration('binlog retention hours', {hours})"; do
  sleep 30
done
unset MYSQL_PWD

cat > /etc/systemd/system/wrt.service <<UNIT
[Unit]
Description=wrt: WebAssembly transforms over Debezium change events
After=network-online.target
Wants=network-online.target

[Service]
Environment=AWS_REGION={region}
# A dynamic user has no home: keep compiled components in a directory systemd provides.
CacheDirectory=wrt
Environment=WRT_CACHE_DIR=/var/cache/wrt
ExecStart=/usr/local/bin/wrt {args}
Restart=always
RestartSec=5
DynamicUser=yes

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now wrt.service
"#,
        stack = t.stack,
        region = t.region,
        registry = t.registry_bucket(),
        binary = facts.wrt_binary_key,
        lake = t.lake_bucket(),
        transforms = format!("_wrt/transforms/{}/", t.stack),
        transform = TRANSFORM_PATH,
        kafka = facts.kafka_arn,
        pipeline = pipeline_toml(t, BROKERS_PLACEHOLDER),
        placeholder = BROKERS_PLACEHOLDER,
        secret = facts.secret_arn,
        endpoint = facts.db_endpoint,
        user = db.master_username,
        hours = db.binlog_retention_hours,
        args = t.hosts.wrt_args,
        tag = READY_TAG,
        reporter = READY_REPORTER,
        admin = ADMIN_LISTEN,
    )
}

/// A host's health: its instance state, and when running, its own report in [`READY_TAG`].
fn host_health(state: &str, report: Option<&str>) -> Health {
    if state != "running" {
        return Health::new(Readiness::Waiting, state);
    }
    let Some(report) = report else {
        return Health::new(Readiness::Waiting, "running, wrt not ready yet (no report)");
    };
    match report.split_once(' ').unwrap_or((report, "")) {
        ("yes", since) => Health::new(
            Readiness::Ready,
            format!("running, wrt ready since {since}"),
        ),
        ("no", why) => Health::new(Readiness::Waiting, format!("running, wrt not ready: {why}")),
        _ => Health::new(
            Readiness::Waiting,
            format!("running, {READY_TAG} says {report:?} (neither yes nor no)"),
        ),
    }
}

impl Stack {
    fn host_subnet(&self, i: usize) -> Resource {
        Resource::Subnet(Tier::Private, i % self.t.network.private_subnets.len())
    }

    pub(crate) async fn observe_host(&self, i: usize, ids: &Ids) -> Result<Option<Found>> {
        let r = Resource::Host(i);
        let live = Filter::builder()
            .name("instance-state-name")
            .set_values(Some(
                ["pending", "running", "stopping", "stopped"]
                    .map(String::from)
                    .to_vec(),
            ))
            .build();
        let out = (self.c.ec2.describe_instances())
            .set_filters(Some(self.ec2_filters(r)))
            .filters(live)
            .send()
            .await
            .map_err(aws("ec2:DescribeInstances"))?;
        let instances: Vec<_> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .cloned()
            .collect();
        let Some(host) = self.only_ours(r, &instances, |h| h.tags())? else {
            return Ok(None);
        };
        let mut found = Found::new(host.instance_id().unwrap_or_default());
        let kind = host.instance_type().map(|k| k.as_str()).unwrap_or_default();
        let want = &self.t.hosts.instance_type;
        found.replace_unless(kind == want, || format!("type is {kind}, want {want}"));
        let subnet = ids.get(&self.host_subnet(i)).map(String::as_str);
        found.replace_unless(host.subnet_id() == subnet, || {
            format!("is not in {}", self.t.name(self.host_subnet(i)))
        });
        let state = host.state().and_then(|s| s.name());
        let report = (host.tags().iter())
            .find(|t| t.key() == Some(READY_TAG))
            .and_then(|t| t.value());
        found.health = Some(host_health(
            state.map_or("in an unknown state", |s| s.as_str()),
            report,
        ));
        Ok(Some(found))
    }

    /// The configured AMI, or the newest Amazon-owned one matching `hosts.ami-name`.
    async fn host_image(&self) -> Result<String> {
        if let Some(id) = &self.t.hosts.ami_id {
            return Ok(id.clone());
        }
        let pattern = &self.t.hosts.ami_name;
        let out = (self.c.ec2.describe_images())
            .owners("amazon")
            .filters(Filter::builder().name("name").values(pattern).build())
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .map_err(aws("ec2:DescribeImages"))?;
        let newest = out
            .images()
            .iter()
            .max_by_key(|i| i.creation_date().unwrap_or_default());
        newest
            .and_then(|i| i.image_id())
            .map(str::to_owned)
            .ok_or_else(|| Error::Conflict {
                resource: "hosts.ami-name".into(),
                message: format!(
                    "no Amazon AMI in {} matches {pattern:?}; set hosts.ami-id",
                    self.t.region
                ),
            })
    }

    pub(crate) async fn create_host(&self, i: usize, ids: &Ids) -> Result<String> {
        let r = Resource::Host(i);
        let facts = HostFacts {
            wrt_binary_key: self.need(ids, Resource::HostBinary)?.into(),
            db_endpoint: self.db_endpoint().await?,
            secret_arn: self.need(ids, Resource::DbSecret)?.into(),
            kafka_arn: self.need(ids, Resource::KafkaCluster)?.into(),
        };
        let script = base64::engine::general_purpose::STANDARD.encode(user_data(&self.t, &facts));
        let call = (self.c.ec2.run_instances())
            .image_id(self.host_image().await?)
            .instance_type(InstanceType::from(self.t.hosts.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(self.need(ids, self.host_subnet(i))?)
            .security_group_ids(self.need(ids, Resource::SecurityGroup)?)
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(self.t.name(Resource::HostProfile))
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .build(),
            )
            .user_data(script)
            .tag_specifications(self.ec2_tags(r, ResourceType::Instance))
            .tag_specifications(self.ec2_tags(r, ResourceType::Volume));
        // A new instance profile takes a few seconds to reach EC2: retry until it has.
        let name = self.t.name(r);
        let launched = std::cell::Cell::new(None);
        wait_until(
            &name,
            "launched",
            self.waits.hosts,
            self.waits.poll,
            || async {
                match call.clone().send().await.map_err(aws("ec2:RunInstances")) {
                    Ok(out) => {
                        let host = out.instances().first().and_then(|h| h.instance_id());
                        launched.set(host.map(str::to_owned));
                        Ok(true)
                    }
                    Err(e) if e.to_string().contains("nstance profile") => Ok(false),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        let id = launched.take().unwrap_or_default();
        let limit = self.waits.hosts;
        (self.c.ec2.wait_until_instance_running())
            .instance_ids(&id)
            .wait(limit)
            .await
            .map_err(waited(&name, "running", limit))?;
        Ok(id)
    }

    pub(crate) async fn delete_host(&self, id: &str) -> Result<()> {
        (self
            .c
            .ec2
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await)
            .map_err(aws("ec2:TerminateInstances"))?;
        // Its network interface holds the subnet and security group until it is gone.
        let limit = self.waits.hosts;
        (self.c.ec2.wait_until_instance_terminated())
            .instance_ids(id)
            .wait(limit)
            .await
            .map_err(waited(id, "terminated", limit))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            wrt_binary_key: "bin/wrt-5e1f".into(),
            db_endpoint: "wrt-db.abc.us-west-2.rds.amazonaws.com".into(),
            secret_arn: "arn:aws:secretsmanager:us-west-2:123456789012:secret:wrt/db-master-AbCdEf"
                .into(),
            kafka_arn: "arn:aws:kafka:us-west-2:123456789012:cluster/wrt-kafka/x".into(),
        }
    }

    /// The body of the script's quoted `wrt.toml` heredoc, parsed.
    fn written_pipeline(script: &str) -> toml::Table {
        let (_, rest) = script
            .split_once("cat > /etc/wrt/wrt.toml <<'TOML'\n")
            .expect("the script writes /etc/wrt/wrt.toml");
        let (body, _) = rest.split_once("\nTOML\n").expect("the heredoc ends");
        body.parse().unwrap_or_else(|e| panic!("{e}\n{body}"))
    }

    #[test]
    fn user_data_installs_wrt_and_sets_binlog_retention_without_secrets() {
        let mut t = Topology::default();
        t.database.literal_password = Some("Bespin12!".into());
        let script = user_data(&t, &facts());
        for needle in [
            "aws s3 cp s3://wrt-registry/bin/wrt-5e1f /usr/local/bin/wrt",
            "until current=$(aws s3 cp s3://wrt-lake/_wrt/transforms/wrt/current.json -",
            "aws s3 cp \"s3://wrt-lake/_wrt/transforms/wrt/$current.wasm\" /opt/wrt/transform.wasm",
            "--cluster-arn arn:aws:kafka:us-west-2:123456789012:cluster/wrt-kafka/x",
            "--query BootstrapBrokerStringSaslIam",
            "sed -i \"s|@MSK_IAM_BOOTSTRAP_BROKERS@|$brokers|\" /etc/wrt/wrt.toml",
            "call mysql.rds_set_configuration('binlog retention hours', 24)",
            "mysql -h wrt-db.abc.us-west-2.rds.amazonaws.com -u admin",
            "--secret-id arn:aws:secretsmanager:us-west-2:123456789012:secret:wrt/db-master-AbCdEf",
            "ExecStart=/usr/local/bin/wrt run --config /etc/wrt/wrt.toml",
            "systemctl enable --now wrt.service",
        ] {
            assert!(
                script.contains(needle),
                "{needle:?} missing from:\n{script}"
            );
        }
        assert!(
            !script.contains("Bespin"),
            "the password leaked into user data"
        );
    }

    #[test]
    fn user_data_writes_the_pipeline_file_of_the_topology() {
        let t = Topology::parse(
            r#"
            stack = "shop"
            region = "eu-west-1"
            [network]
            public-subnets = [{ cidr = "10.0.1.0/24", az = "eu-west-1a" }, { cidr = "10.0.2.0/24", az = "eu-west-1b" }]
            private-subnets = [{ cidr = "10.0.3.0/24", az = "eu-west-1a" }, { cidr = "10.0.4.0/24", az = "eu-west-1b" }]
            [database]
            availability-zone = "eu-west-1a"
            [connector]
            topic-prefix = "cdc.shop"
            [storage]
            lake-bucket = "shop-data-lake"
            format = "parquet"
            glue-database = "shop_lake"
            "#,
        )
        .unwrap();
        t.validate().unwrap();
        let script = user_data(&t, &facts());
        let expected: toml::Table = toml::from_str(
            r#"
            name = "shop"
            [source]
            kind = "kafka"
            brokers = "@MSK_IAM_BOOTSTRAP_BROKERS@"
            topics = ['^cdc\.shop\..*', "cdc.shop"]
            auth = { mechanism = "msk-iam", region = "eu-west-1" }
            [transform]
            path = "/opt/wrt/transform.wasm"
            [sink]
            kind = "s3"
            bucket = "shop-data-lake"
            region = "eu-west-1"
            [batch]
            format = "parquet"
            [catalog]
            kind = "glue"
            database = "shop_lake"
            region = "eu-west-1"
            [registry]
            [admin]
            listen = "127.0.0.1:9464"
            "#,
        )
        .unwrap();
        assert_eq!(written_pipeline(&script), expected);
        assert!(
            script.contains("s3://shop-data-lake/_wrt/transforms/shop/current.json"),
            "{script}"
        );
    }

    /// The host reports its own readiness as a tag on its own instance, from early in the
    /// boot, polling the admin address its pipeline file sets; nothing secret goes with it.
    #[test]
    fn user_data_reports_readiness_as_a_tag_on_its_own_instance() {
        let mut t = Topology::default();
        t.database.literal_password = Some("Bespin12!".into());
        let script = user_data(&t, &facts());
        let listen = written_pipeline(&script)["admin"]["listen"]
            .as_str()
            .unwrap()
            .to_owned();
        for needle in [
            "cat > /usr/local/bin/wrt-ready <<'READY'\n#!/bin/bash\n",
            // IMDSv2: a token first, then the instance's own id.
            "curl -sf -X PUT http://169.254.169.254/latest/api/token",
            "until instance=$(imds instance-id); do sleep 5; done",
            "answer=$(curl -s --max-time 5 --fail-with-body \"$readyz\")",
            "if [ \"$state\" != \"$reported\" ]; then",
            "aws ec2 create-tags --resources \"$instance\"",
            "{\\\"Key\\\": \\\"wrt:ready\\\", \\\"Value\\\": \\\"$value\\\"}",
            "value=\"yes $(date -u +%Y-%m-%dT%H:%M:%SZ)\"",
            &format!("ExecStart=/usr/local/bin/wrt-ready http://{listen}/readyz"),
            "Environment=AWS_REGION=us-west-2",
            "systemctl enable --now wrt-ready.service",
        ] {
            assert!(
                script.contains(needle),
                "{needle:?} missing from:\n{script}"
            );
        }
        // Started before the long waits, so a host stuck in its first boot says so.
        let reporter = script.find("enable --now wrt-ready.service").unwrap();
        assert!(reporter < script.find("until current=").unwrap());
        assert!(reporter < script.find("until brokers=").unwrap());
        let (_, reporter) = script.split_once("<<'READY'\n").unwrap();
        let (reporter, _) = reporter.split_once("\nREADY\n").unwrap();
        for secret in ["Bespin", "secretsmanager", "MYSQL_PWD", "password"] {
            assert!(!reporter.contains(secret), "{secret} in:\n{reporter}");
        }
        assert!(
            !script.contains("Bespin"),
            "the password leaked into user data"
        );
    }

    #[test]
    fn a_host_is_ready_only_when_running_and_its_wrt_says_so() {
        let health = |state, report| {
            let h = host_health(state, report);
            (h.readiness, h.detail)
        };
        let waiting = |detail: &str| (Readiness::Waiting, detail.to_owned());
        assert_eq!(
            health("running", Some("yes 2026-05-01T10:00:00Z")),
            (
                Readiness::Ready,
                "running, wrt ready since 2026-05-01T10:00:00Z".to_owned()
            )
        );
        assert_eq!(
            health("running", None),
            waiting("running, wrt not ready yet (no report)")
        );
        assert_eq!(
            health("running", Some("no wrt.service is failed")),
            waiting("running, wrt not ready: wrt.service is failed")
        );
        // A stopped host's last report is stale: its state is all there is to say.
        assert_eq!(
            health("stopped", Some("yes 2026-05-01T10:00:00Z")),
            waiting("stopped")
        );
        assert_eq!(health("pending", None), waiting("pending"));
        assert_eq!(
            health("running", Some("maybe")),
            waiting("running, wrt:ready says \"maybe\" (neither yes nor no)")
        );
    }

    #[test]
    fn pipeline_file_takes_known_brokers_verbatim() {
        let brokers = "b-1.wrt.x.c2.kafka.us-west-2.amazonaws.com:9098,b-2.wrt.x.c2.kafka.us-west-2.amazonaws.com:9098";
        let file: toml::Table = pipeline_toml(&Topology::default(), brokers)
            .parse()
            .unwrap();
        assert_eq!(file["source"]["brokers"].as_str(), Some(brokers));
        let topics = file["source"]["topics"].as_array().unwrap();
        assert_eq!(topics[0].as_str(), Some("^wrt\\..*"));
        assert_eq!(topics[1].as_str(), Some("wrt"));
    }
}
