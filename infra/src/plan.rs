//! The resource graph in dependency order, and the plan: desired versus found.

use std::fmt;

use crate::config::Topology;

/// Which subnets a resource belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Public,
    Private,
}

/// Which bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Lake,
    Registry,
}

/// One resource of the stack. [`Topology::resources`] lists them in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Vpc,
    Subnet(Tier, usize),
    InternetGateway,
    ElasticIp,
    NatGateway,
    RouteTable(Tier),
    SecurityGroup,
    Bucket(Bucket),
    /// The Glue database the hosts describe the lake's Parquet tables in, when configured.
    GlueDatabase,
    /// The wrt binary the hosts install, in the registry bucket under its digest.
    HostBinary,
    /// The connector's plugin zip, in the registry bucket under its digest.
    PluginArchive,
    /// The transform the hosts run, deployed to the lake's registry.
    Transform,
    DbSecret,
    DbSubnetGroup,
    DbParameterGroup,
    KafkaCluster,
    DbInstance,
    HostRole,
    HostProfile,
    Host(usize),
    BinlogRetention,
    ConnectorRole,
    WorkerConfiguration,
    CustomPlugin,
    Connector,
}

impl Tier {
    fn as_str(self) -> &'static str {
        match self {
            Tier::Public => "public",
            Tier::Private => "private",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Topology {
    /// Every resource, each after the ones it needs: `up` walks this list, `down` walks it backwards.
    ///
    /// The MSK cluster comes before the database instance so both provision at once: `up`
    /// waits for the database (the hosts need its endpoint) but not for the cluster, which
    /// only the connector needs active.
    pub fn resources(&self) -> Vec<Resource> {
        let net = &self.network;
        let mut all = vec![Resource::Vpc];
        all.extend((0..net.public_subnets.len()).map(|i| Resource::Subnet(Tier::Public, i)));
        all.extend((0..net.private_subnets.len()).map(|i| Resource::Subnet(Tier::Private, i)));
        all.extend([
            Resource::InternetGateway,
            Resource::ElasticIp,
            Resource::NatGateway,
            Resource::RouteTable(Tier::Public),
            Resource::RouteTable(Tier::Private),
            Resource::SecurityGroup,
            Resource::Bucket(Bucket::Lake),
            Resource::Bucket(Bucket::Registry),
        ]);
        if self.storage.glue_database.is_some() {
            all.push(Resource::GlueDatabase);
        }
        // Shipped before the slow resources, so a bad artifact stops `up` within a minute.
        if self.hosts.count > 0 {
            all.push(Resource::HostBinary);
        }
        if self.connector.enabled {
            all.push(Resource::PluginArchive);
        }
        all.push(Resource::Transform);
        all.extend([
            Resource::DbSecret,
            Resource::DbSubnetGroup,
            Resource::DbParameterGroup,
            Resource::KafkaCluster,
            Resource::DbInstance,
            Resource::HostRole,
            Resource::HostProfile,
        ]);
        all.extend((0..self.hosts.count).map(Resource::Host));
        all.push(Resource::BinlogRetention);
        if self.connector.enabled {
            all.extend([
                Resource::ConnectorRole,
                Resource::WorkerConfiguration,
                Resource::CustomPlugin,
                Resource::Connector,
            ]);
        }
        all
    }

    /// The tier the database's subnet group uses: public only when the database is public.
    pub(crate) fn database_tier(&self) -> Tier {
        if self.database.publicly_accessible {
            Tier::Public
        } else {
            Tier::Private
        }
    }

    pub(crate) fn subnets(&self, tier: Tier) -> &[crate::config::Subnet] {
        match tier {
            Tier::Public => &self.network.public_subnets,
            Tier::Private => &self.network.private_subnets,
        }
    }

    /// The resource's name: its `Name` tag, or its name in services that name things.
    pub fn name(&self, r: Resource) -> String {
        let s = &self.stack;
        match r {
            Resource::Vpc => format!("{s}-vpc"),
            Resource::Subnet(tier, i) => format!("{s}-{}-{}", tier.as_str(), i + 1),
            Resource::InternetGateway => format!("{s}-igw"),
            Resource::ElasticIp => format!("{s}-nat-eip"),
            Resource::NatGateway => format!("{s}-nat"),
            Resource::RouteTable(tier) => format!("{s}-{}", tier.as_str()),
            Resource::SecurityGroup => format!("{s}-sg"),
            Resource::Bucket(Bucket::Lake) => self.lake_bucket(),
            Resource::Bucket(Bucket::Registry) => self.registry_bucket(),
            Resource::GlueDatabase => self.storage.glue_database.clone().unwrap_or_default(),
            Resource::HostBinary => "wrt".into(),
            Resource::PluginArchive => "debezium-plugin".into(),
            Resource::Transform => s.clone(),
            Resource::DbSecret => format!("{s}/db-master"),
            Resource::DbSubnetGroup => format!("{s}-db-subnets"),
            Resource::DbParameterGroup => {
                format!("{s}-{}", self.database.parameter_family.replace('.', ""))
            }
            Resource::DbInstance | Resource::BinlogRetention => format!("{s}-db"),
            Resource::KafkaCluster => format!("{s}-kafka"),
            Resource::HostRole | Resource::HostProfile => format!("{s}-host"),
            Resource::Host(i) => format!("{s}-host-{}", i + 1),
            Resource::ConnectorRole => format!("{s}-connector"),
            Resource::WorkerConfiguration => format!("{s}-worker"),
            Resource::CustomPlugin => format!("{s}-debezium"),
            Resource::Connector => format!("{s}-debezium-mysql"),
        }
    }

    /// What the resource should look like, in a few words, for plan and progress lines.
    pub fn describe(&self, r: Resource) -> String {
        let net = &self.network;
        let db = &self.database;
        match r {
            Resource::Vpc => net.vpc_cidr.to_string(),
            Resource::Subnet(tier, i) => {
                let subnet = &self.subnets(tier)[i];
                format!("{} in {}", subnet.cidr, subnet.az)
            }
            Resource::InternetGateway => format!("attached to {}", self.name(Resource::Vpc)),
            Resource::ElasticIp => "for the NAT gateway".into(),
            Resource::NatGateway => format!("in {}", self.name(Resource::Subnet(Tier::Public, 0))),
            Resource::RouteTable(tier) => format!(
                "{} local, 0.0.0.0/0 -> {}; {} {} subnets",
                net.vpc_cidr,
                match tier {
                    Tier::Public => "internet gateway",
                    Tier::Private => "NAT gateway",
                },
                self.subnets(tier).len(),
                tier.as_str()
            ),
            Resource::SecurityGroup => format!("all traffic from {} and from itself", net.vpc_cidr),
            Resource::Bucket(Bucket::Lake) => "data lake; public access blocked, encrypted".into(),
            Resource::Bucket(Bucket::Registry) => {
                "transforms, wrt binary, connector plugin; public access blocked, encrypted".into()
            }
            Resource::GlueDatabase => {
                "the lake's Parquet tables, made and extended by the hosts as files land".into()
            }
            Resource::HostBinary => format!(
                "s3://{}/bin/wrt-<sha256>: this wrt, for Linux {}",
                self.registry_bucket(),
                self.host_architecture()
            ),
            Resource::PluginArchive => format!(
                "s3://{}/plugins/: Debezium MySQL {} from Maven Central + Secrets Manager config provider",
                self.registry_bucket(),
                self.connector.debezium_version
            ),
            Resource::Transform => format!(
                "s3://{}/_wrt/transforms/{}/: deployed by `up --transform` or `wrt deploy`",
                self.lake_bucket(),
                self.stack
            ),
            Resource::DbSecret => match db.literal_password {
                Some(_) => "master password (literal from the topology: unsafe)".into(),
                None => "master password (generated)".into(),
            },
            Resource::DbSubnetGroup => format!(
                "{} subnets in {}",
                self.database_tier().as_str(),
                self.subnets(self.database_tier())
                    .iter()
                    .map(|s| s.az.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Resource::DbParameterGroup => format!(
                "{}; binlog_format={}, binlog_row_image={}",
                db.parameter_family, db.binlog_format, db.binlog_row_image
            ),
            Resource::KafkaCluster => format!(
                "Kafka {}, {} x {} in the private subnets",
                self.kafka.kafka_version,
                self.kafka.brokers_per_subnet * net.private_subnets.len() as i32,
                self.kafka.broker_instance_type
            ),
            Resource::DbInstance => format!(
                "MySQL {}, {}, single AZ {}, user {}, database {}{}",
                db.engine_version,
                db.instance_class,
                db.availability_zone,
                db.master_username,
                db.database_name,
                if db.publicly_accessible {
                    ", PUBLICLY ACCESSIBLE (unsafe)"
                } else {
                    ""
                }
            ),
            Resource::HostRole => "assumed by the wrt hosts: only what they need".into(),
            Resource::HostProfile => format!("carries {}", self.name(Resource::HostRole)),
            Resource::Host(i) => {
                let subnets = &net.private_subnets;
                let subnet = Resource::Subnet(Tier::Private, i % subnets.len());
                format!(
                    "{} in {}, runs wrt as a service",
                    self.hosts.instance_type,
                    self.name(subnet)
                )
            }
            Resource::BinlogRetention => format!(
                "{} h, by SQL from the hosts' first boot (not visible through the RDS API)",
                db.binlog_retention_hours
            ),
            Resource::ConnectorRole => "assumed by MSK Connect".into(),
            Resource::WorkerConfiguration => "Secrets Manager config provider".into(),
            Resource::CustomPlugin => "the plugin zip above; a new zip makes a new plugin".into(),
            Resource::Connector => format!(
                "Debezium MySQL -> topics {}.{}.*",
                self.connector.topic_prefix, db.database_name
            ),
        }
    }
}

impl Resource {
    /// The kind of resource, as AWS calls it.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Vpc => "vpc",
            Resource::Subnet(..) => "subnet",
            Resource::InternetGateway => "internet gateway",
            Resource::ElasticIp => "elastic ip",
            Resource::NatGateway => "nat gateway",
            Resource::RouteTable(_) => "route table",
            Resource::SecurityGroup => "security group",
            Resource::Bucket(_) => "s3 bucket",
            Resource::GlueDatabase => "glue database",
            Resource::HostBinary | Resource::PluginArchive => "s3 object",
            Resource::Transform => "transform",
            Resource::DbSecret => "secret",
            Resource::DbSubnetGroup => "db subnet group",
            Resource::DbParameterGroup => "db parameter group",
            Resource::KafkaCluster => "msk cluster",
            Resource::DbInstance => "db instance",
            Resource::HostRole | Resource::ConnectorRole => "iam role",
            Resource::HostProfile => "instance profile",
            Resource::Host(_) => "ec2 instance",
            Resource::BinlogRetention => "binlog retention",
            Resource::WorkerConfiguration => "worker configuration",
            Resource::CustomPlugin => "custom plugin",
            Resource::Connector => "msk connector",
        }
    }
}

/// What `up` would do to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Not found: will be created.
    Create,
    /// Found as desired.
    Unchanged,
    /// Found; these differences are fixed in place.
    Change(Vec<String>),
    /// Found; these differences cannot be fixed in place (`down` then `up` replaces it).
    Replace(Vec<String>),
    /// Not done through an AWS API; the text says where it happens.
    Deferred,
}

/// Whether a resource that does the pipeline's work is doing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// A running host whose wrt reported ready; a RUNNING connector.
    Ready,
    /// Not yet, or not now: starting, stopped, not ready.
    Waiting,
    /// Stopped by a failure that waiting does not fix.
    Failed,
}

/// How a host or the connector is doing, beyond matching the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub readiness: Readiness,
    /// In a few words, e.g. `running, wrt ready since 2026-05-01T10:00:00Z`.
    pub detail: String,
}

impl Health {
    pub fn new(readiness: Readiness, detail: impl Into<String>) -> Self {
        Self {
            readiness,
            detail: detail.into(),
        }
    }
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub resource: Resource,
    pub name: String,
    /// The found resource's id, if any.
    pub id: Option<String>,
    pub action: Action,
    pub detail: String,
    /// For the hosts and the connector, when found: whether they are doing their work.
    pub health: Option<Health>,
}

impl Step {
    /// The line `wrt infra status` prints: a first word that is `ok` only for a resource that
    /// is there as wanted and, for a host or the connector, doing its work; then the id, and
    /// how a host or the connector is doing.
    pub fn status_line(&self) -> String {
        let readiness = self.health.as_ref().map(|h| h.readiness);
        let state = match (&self.action, readiness) {
            (Action::Create, _) => "missing",
            (Action::Change(_) | Action::Replace(_), _) => "differs",
            (Action::Unchanged, Some(Readiness::Waiting)) => "waiting",
            (Action::Unchanged, Some(Readiness::Failed)) => "failed",
            (Action::Unchanged, _) => "ok",
            (Action::Deferred, _) if self.resource == Resource::Transform => "waiting",
            (Action::Deferred, _) => "deferred",
        };
        let id = match (&self.action, self.resource) {
            (Action::Deferred, Resource::Transform) => self.detail.as_str(),
            _ => self.id.as_deref().unwrap_or("-"),
        };
        let mut line = format!(
            "{state:<9}{:<21}{:<22}{id}",
            self.resource.kind(),
            self.name
        );
        if let Some(health) = &self.health {
            line.push_str("  ");
            line.push_str(&health.detail);
        }
        line
    }
}

/// Desired versus found, for every resource, in dependency order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub stack: String,
    pub region: String,
    pub steps: Vec<Step>,
}

impl Plan {
    fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.steps.iter().filter(|s| f(&s.action)).count()
    }

    /// How many resources `up` would create or change.
    pub fn changes(&self) -> usize {
        self.count(|a| !matches!(a, Action::Unchanged | Action::Deferred))
    }

    /// What `wrt infra status` prints: one [`Step::status_line`] per resource.
    pub fn status(&self) -> String {
        self.steps
            .iter()
            .map(|step| step.status_line() + "\n")
            .collect()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Create => "+ create",
            Action::Unchanged => "= ok",
            Action::Change(_) => "~ change",
            Action::Replace(_) => "! replace",
            Action::Deferred => "> deferred",
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<11}{:<21}{:<22}{}",
            self.action.to_string(),
            self.resource.kind(),
            self.name,
            self.detail
        )?;
        if let Some(id) = &self.id {
            write!(f, " [{id}]")?;
        }
        if let Action::Change(diffs) | Action::Replace(diffs) = &self.action {
            for d in diffs {
                write!(f, "\n{:<11}- {d}", "")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "stack {} in {}: {} to create, {} to change, {} to replace, {} unchanged",
            self.stack,
            self.region,
            self.count(|a| *a == Action::Create),
            self.count(|a| matches!(a, Action::Change(_))),
            self.count(|a| matches!(a, Action::Replace(_))),
            self.count(|a| *a == Action::Unchanged),
        )?;
        for step in &self.steps {
            writeln!(f, "  {step}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_comes_after_what_it_needs() {
        let t = Topology::default();
        let order = t.resources();
        let pos = |r: Resource| order.iter().position(|x| *x == r).unwrap();
        let needs: &[(Resource, &[Resource])] = &[
            (Resource::Subnet(Tier::Private, 1), &[Resource::Vpc]),
            (Resource::InternetGateway, &[Resource::Vpc]),
            (
                Resource::NatGateway,
                &[Resource::ElasticIp, Resource::Subnet(Tier::Public, 0)],
            ),
            (
                Resource::RouteTable(Tier::Public),
                &[Resource::InternetGateway, Resource::Subnet(Tier::Public, 1)],
            ),
            (
                Resource::RouteTable(Tier::Private),
                &[Resource::NatGateway, Resource::Subnet(Tier::Private, 1)],
            ),
            (Resource::SecurityGroup, &[Resource::Vpc]),
            (
                Resource::DbInstance,
                &[
                    Resource::DbSecret,
                    Resource::DbSubnetGroup,
                    Resource::DbParameterGroup,
                    Resource::SecurityGroup,
                ],
            ),
            (
                Resource::KafkaCluster,
                &[Resource::SecurityGroup, Resource::Subnet(Tier::Private, 1)],
            ),
            (
                Resource::HostRole,
                &[Resource::Bucket(Bucket::Lake), Resource::KafkaCluster],
            ),
            (Resource::HostProfile, &[Resource::HostRole]),
            (
                Resource::Host(0),
                &[
                    Resource::HostProfile,
                    Resource::DbInstance,
                    Resource::RouteTable(Tier::Private),
                ],
            ),
            (Resource::BinlogRetention, &[Resource::Host(0)]),
            (
                Resource::CustomPlugin,
                &[Resource::Bucket(Bucket::Registry)],
            ),
            (
                Resource::Connector,
                &[
                    Resource::CustomPlugin,
                    Resource::WorkerConfiguration,
                    Resource::ConnectorRole,
                    Resource::DbInstance,
                    Resource::KafkaCluster,
                ],
            ),
        ];
        for (r, deps) in needs {
            for d in *deps {
                assert!(pos(*d) < pos(*r), "{r:?} must come after {d:?}");
            }
        }
        for artifact in [
            Resource::HostBinary,
            Resource::PluginArchive,
            Resource::Transform,
        ] {
            assert!(pos(Resource::Bucket(Bucket::Registry)) < pos(artifact));
            assert!(
                pos(artifact) < pos(Resource::KafkaCluster),
                "{artifact:?} ships early"
            );
        }
        assert!(pos(Resource::HostBinary) < pos(Resource::Host(0)));
        assert!(pos(Resource::PluginArchive) < pos(Resource::CustomPlugin));
        assert_eq!(order.len(), 29);
        assert!(!order.contains(&Resource::GlueDatabase));
    }

    #[test]
    fn a_glue_database_comes_before_the_role_that_names_it() {
        let mut t = Topology::default();
        t.storage.glue_database = Some("shop_lake".into());
        let order = t.resources();
        let pos = |r: Resource| order.iter().position(|x| *x == r).unwrap();
        assert!(pos(Resource::Bucket(Bucket::Lake)) < pos(Resource::GlueDatabase));
        assert!(pos(Resource::GlueDatabase) < pos(Resource::HostRole));
        assert_eq!(t.name(Resource::GlueDatabase), "shop_lake");
    }

    /// The recipe's plan on an empty account, MSK Connect included (moto lacks it, so the
    /// integration snapshot stops before it): every resource to create, in order.
    #[test]
    fn the_recipe_plan_on_an_empty_account() {
        let t = Topology::default();
        let steps = t.resources().into_iter().map(|r| Step {
            resource: r,
            name: t.name(r),
            id: None,
            action: if r == Resource::BinlogRetention {
                Action::Deferred
            } else {
                Action::Create
            },
            detail: t.describe(r),
            health: None,
        });
        let plan = Plan {
            stack: t.stack.clone(),
            region: t.region.clone(),
            steps: steps.collect(),
        };
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/snapshots/plan-recipe.txt"
        );
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(path, plan.to_string()).unwrap();
        }
        assert_eq!(plan.to_string(), std::fs::read_to_string(path).unwrap());
    }

    #[test]
    fn names_derive_from_the_stack() {
        let t = Topology::default();
        assert_eq!(t.name(Resource::Subnet(Tier::Private, 1)), "wrt-private-2");
        assert_eq!(t.name(Resource::DbParameterGroup), "wrt-mysql80");
        assert_eq!(t.name(Resource::Bucket(Bucket::Lake)), "wrt-lake");
    }

    #[test]
    fn connector_steps_leave_with_the_connector() {
        let mut t = Topology::default();
        t.connector.enabled = false;
        t.hosts.count = 2;
        let order = t.resources();
        assert!(!order.contains(&Resource::Connector));
        assert!(order.contains(&Resource::Host(1)));
        assert_eq!(order.last(), Some(&Resource::BinlogRetention));
    }
}
