//! The engine: survey the account by tags, plan, converge (`up`), tear down (`down`).

use std::collections::HashMap;

use aws_config::SdkConfig;

use crate::aws::{Clients, Waits};
use crate::config::Topology;
use crate::error::{Error, Failure, Result};
use crate::plan::{Action, Plan, Resource, Step};

/// A topology bound to an AWS account.
#[derive(Debug, Clone)]
pub struct Stack {
    pub(crate) t: Topology,
    pub(crate) c: Clients,
    pub(crate) waits: Waits,
    /// Let `down` delete the buckets' objects; otherwise a non-empty bucket is kept and reported.
    pub(crate) purge_buckets: bool,
}

/// What was found of one resource, and how it differs from the topology.
#[derive(Debug)]
pub(crate) struct Found {
    pub id: String,
    /// Differences `up` fixes in place.
    pub change: Vec<String>,
    /// Differences only a replacement fixes.
    pub replace: Vec<String>,
    /// Carries this stack's tag, so `down` may delete it.
    pub owned: bool,
}

impl Found {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            change: Vec::new(),
            replace: Vec::new(),
            owned: true,
        }
    }

    /// Notes a difference `up` fixes, unless `ok`.
    pub fn change_unless(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.change.push(what());
        }
    }

    /// Notes a difference that needs a replacement, unless `ok`.
    pub fn replace_unless(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.replace.push(what());
        }
    }
}

/// Ids of the resources found or created so far, for their dependents.
pub(crate) type Ids = HashMap<Resource, String>;

/// Progress lines for a person watching `up` or `down`.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// What `down` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// Resources deleted.
    pub deleted: usize,
}

impl Stack {
    /// Binds a validated topology to the account `config` reaches.
    pub fn new(topology: Topology, config: &SdkConfig) -> Result<Self> {
        Self::with_clients(topology, Clients::new(config))
    }

    /// Binds a validated topology to clients configured by the caller.
    pub fn with_clients(topology: Topology, clients: Clients) -> Result<Self> {
        topology.validate()?;
        Ok(Self {
            t: topology,
            c: clients,
            waits: Waits::default(),
            purge_buckets: false,
        })
    }

    /// Replaces the default wait limits.
    pub fn with_waits(mut self, waits: Waits) -> Self {
        self.waits = waits;
        self
    }

    /// Lets `down` delete the objects in the stack's buckets (the lake's data included).
    pub fn with_purge_buckets(mut self, purge: bool) -> Self {
        self.purge_buckets = purge;
        self
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.t
    }

    /// Finds every resource by its tags and says what `up` would do to it.
    pub async fn plan(&self) -> Result<Plan> {
        let mut ids = Ids::new();
        let mut steps = Vec::new();
        for r in self.t.resources() {
            let found = self.observe(r, &ids).await?;
            steps.push(self.step(r, found, &mut ids));
        }
        Ok(self.plan_of(steps))
    }

    /// Creates what is missing and fixes what differs, in dependency order; returns what it did.
    pub async fn up(&self, progress: Progress<'_>) -> Result<Plan> {
        let mut ids = Ids::new();
        let mut steps = Vec::new();
        for r in self.t.resources() {
            let found = self.observe(r, &ids).await?;
            let step = self.step(r, found, &mut ids);
            match &step.action {
                Action::Create => {
                    progress(&format!("creating {} {} ...", r.kind(), step.name));
                    let id = match self.create(r, &ids).await {
                        Ok(id) => id,
                        // Someone (a run we interrupted, or a race) made it meanwhile: adopt it.
                        Err(e) if e.is_already_exists() => {
                            self.observe(r, &ids).await?.ok_or(e)?.id
                        }
                        Err(e) => return Err(e),
                    };
                    self.fix(r, &ids, &id).await?;
                    ids.insert(r, id);
                }
                Action::Change(_) => {
                    progress(&format!("changing {} {} ...", r.kind(), step.name));
                    self.fix(r, &ids, step.id.as_deref().unwrap_or_default())
                        .await?;
                }
                Action::Replace(diffs) => {
                    return Err(Error::Conflict {
                        resource: format!("{} {}", r.kind(), step.name),
                        message: format!(
                            "differs in ways that need a replacement ({}); \
                             run `wrt infra down` and `up` again, or change the topology to match",
                            diffs.join("; ")
                        ),
                    });
                }
                Action::Unchanged | Action::Deferred => {}
            }
            let mut done = step.clone();
            done.id = ids.get(&r).cloned();
            progress(&done.to_string());
            steps.push(step);
        }
        Ok(self.plan_of(steps))
    }

    /// Deletes every resource carrying this stack's tags, dependents first; goes on past
    /// failures and reports them all.
    pub async fn down(&self, progress: Progress<'_>) -> Result<Teardown> {
        let mut ids = Ids::new();
        let mut failures = Vec::new();
        let mut found = Vec::new();
        for r in self.t.resources() {
            match self.observe(r, &ids).await {
                Ok(Some(f)) if !f.owned => progress(&format!(
                    "keeping {} {}: it does not carry this stack's tag",
                    r.kind(),
                    self.t.name(r)
                )),
                Ok(Some(f)) => {
                    ids.insert(r, f.id.clone());
                    found.push((r, f.id));
                }
                Ok(None) => {}
                Err(error) => failures.push(self.failure(r, error)),
            }
        }
        let mut deleted = 0;
        for (r, id) in found.into_iter().rev() {
            progress(&format!(
                "deleting {} {} [{id}] ...",
                r.kind(),
                self.t.name(r)
            ));
            match self.delete(r, &id).await {
                Ok(()) => deleted += 1,
                Err(e) if e.is_not_found() => deleted += 1,
                Err(error) => {
                    progress(&format!("  failed: {error}"));
                    failures.push(self.failure(r, error));
                }
            }
        }
        if failures.is_empty() {
            Ok(Teardown { deleted })
        } else {
            Err(Error::Teardown(failures))
        }
    }

    fn failure(&self, r: Resource, error: Error) -> Failure {
        Failure {
            resource: format!("{} {}", r.kind(), self.t.name(r)),
            error,
        }
    }

    fn plan_of(&self, steps: Vec<Step>) -> Plan {
        Plan {
            stack: self.t.stack.clone(),
            region: self.t.region.clone(),
            steps,
        }
    }

    fn step(&self, r: Resource, found: Option<Found>, ids: &mut Ids) -> Step {
        let (id, action) = match found {
            _ if r == Resource::BinlogRetention => (None, Action::Deferred),
            None => (None, Action::Create),
            Some(f) if !f.replace.is_empty() => (Some(f.id), Action::Replace(f.replace)),
            Some(f) if !f.change.is_empty() => (Some(f.id), Action::Change(f.change)),
            Some(f) => (Some(f.id), Action::Unchanged),
        };
        if let Some(id) = &id {
            ids.insert(r, id.clone());
        }
        Step {
            resource: r,
            name: self.t.name(r),
            id,
            action,
            detail: self.t.describe(r),
        }
    }

    /// The id of a resource `r` depends on.
    pub(crate) fn need<'a>(&self, ids: &'a Ids, r: Resource) -> Result<&'a str> {
        ids.get(&r)
            .map(String::as_str)
            .ok_or_else(|| Error::Conflict {
                resource: format!("{} {}", r.kind(), self.t.name(r)),
                message: "is needed first but was not found; run `wrt infra up`".into(),
            })
    }

    async fn observe(&self, r: Resource, ids: &Ids) -> Result<Option<Found>> {
        match r {
            Resource::Vpc => self.observe_vpc().await,
            Resource::Subnet(tier, i) => self.observe_subnet(tier, i, ids).await,
            Resource::InternetGateway => self.observe_internet_gateway(ids).await,
            Resource::ElasticIp => self.observe_elastic_ip().await,
            Resource::NatGateway => self.observe_nat_gateway(ids).await,
            Resource::RouteTable(tier) => self.observe_route_table(tier, ids).await,
            Resource::SecurityGroup => self.observe_security_group(ids).await,
            Resource::Bucket(b) => self.observe_bucket(b).await,
            Resource::DbSecret => self.observe_secret().await,
            Resource::DbSubnetGroup => self.observe_db_subnet_group(ids).await,
            Resource::DbParameterGroup => self.observe_parameter_group().await,
            Resource::KafkaCluster => self.observe_kafka().await,
            Resource::DbInstance => self.observe_db_instance(ids).await,
            Resource::HostRole | Resource::ConnectorRole => self.observe_role(r, ids).await,
            Resource::HostProfile => self.observe_instance_profile().await,
            Resource::Host(i) => self.observe_host(i, ids).await,
            Resource::BinlogRetention => Ok(None),
            Resource::WorkerConfiguration => self.observe_worker_configuration().await,
            Resource::CustomPlugin => self.observe_custom_plugin().await,
            Resource::Connector => self.observe_connector().await,
        }
    }

    async fn create(&self, r: Resource, ids: &Ids) -> Result<String> {
        match r {
            Resource::Vpc => self.create_vpc().await,
            Resource::Subnet(tier, i) => self.create_subnet(tier, i, ids).await,
            Resource::InternetGateway => self.create_internet_gateway().await,
            Resource::ElasticIp => self.create_elastic_ip().await,
            Resource::NatGateway => self.create_nat_gateway(ids).await,
            Resource::RouteTable(tier) => self.create_route_table(tier, ids).await,
            Resource::SecurityGroup => self.create_security_group(ids).await,
            Resource::Bucket(b) => self.create_bucket(b).await,
            Resource::DbSecret => self.create_secret().await,
            Resource::DbSubnetGroup => self.create_db_subnet_group(ids).await,
            Resource::DbParameterGroup => self.create_parameter_group().await,
            Resource::KafkaCluster => self.create_kafka(ids).await,
            Resource::DbInstance => self.create_db_instance(ids).await,
            Resource::HostRole | Resource::ConnectorRole => self.create_role(r).await,
            Resource::HostProfile => self.create_instance_profile().await,
            Resource::Host(i) => self.create_host(i, ids).await,
            Resource::BinlogRetention => Ok(String::new()),
            Resource::WorkerConfiguration => self.create_worker_configuration().await,
            Resource::CustomPlugin => self.create_custom_plugin().await,
            Resource::Connector => self.create_connector(ids).await,
        }
    }

    /// Brings a found resource's fixable parts (attachments, routes, rules, parameters,
    /// policies, tags) to the topology; idempotent, and run after every create too.
    async fn fix(&self, r: Resource, ids: &Ids, id: &str) -> Result<()> {
        match r {
            Resource::InternetGateway => self.attach_internet_gateway(id, ids).await,
            Resource::RouteTable(tier) => self.fix_route_table(tier, id, ids).await,
            Resource::SecurityGroup => self.fix_security_group(id).await,
            Resource::Bucket(b) => self.fix_bucket(b).await,
            Resource::DbSubnetGroup => self.fix_db_subnet_group(ids).await,
            Resource::DbParameterGroup => self.fix_parameter_group().await,
            Resource::DbInstance => self.fix_db_instance(ids).await,
            Resource::HostRole | Resource::ConnectorRole => self.fix_role(r, ids).await,
            Resource::HostProfile => self.fix_instance_profile().await,
            _ => Ok(()),
        }
    }

    async fn delete(&self, r: Resource, id: &str) -> Result<()> {
        match r {
            Resource::Vpc => self.delete_vpc(id).await,
            Resource::Subnet(..) => self.delete_subnet(id).await,
            Resource::InternetGateway => self.delete_internet_gateway(id).await,
            Resource::ElasticIp => self.delete_elastic_ip(id).await,
            Resource::NatGateway => self.delete_nat_gateway(id).await,
            Resource::RouteTable(_) => self.delete_route_table(id).await,
            Resource::SecurityGroup => self.delete_security_group(id).await,
            Resource::Bucket(b) => self.delete_bucket(b).await,
            Resource::DbSecret => self.delete_secret(id).await,
            Resource::DbSubnetGroup => self.delete_db_subnet_group().await,
            Resource::DbParameterGroup => self.delete_parameter_group().await,
            Resource::KafkaCluster => self.delete_kafka(id).await,
            Resource::DbInstance => self.delete_db_instance().await,
            Resource::HostRole | Resource::ConnectorRole => self.delete_role(r).await,
            Resource::HostProfile => self.delete_instance_profile().await,
            Resource::Host(_) => self.delete_host(id).await,
            Resource::BinlogRetention => Ok(()),
            Resource::WorkerConfiguration => self.delete_worker_configuration(id).await,
            Resource::CustomPlugin => self.delete_custom_plugin(id).await,
            Resource::Connector => self.delete_connector(id).await,
        }
    }
}
