//! The engine: survey the account by tags, plan, converge (`up`), tear down (`down`).

use std::collections::HashMap;
use std::path::PathBuf;

use aws_config::SdkConfig;

use crate::artifacts::{HostBinary, TransformDeploy};
use crate::aws::{Clients, Waits};
use crate::config::Topology;
use crate::error::{Error, Failure, Result};
use crate::plan::{Action, Health, Plan, Resource, Step};

/// A topology bound to an AWS account.
#[derive(Debug, Clone)]
pub struct Stack {
    pub(crate) t: Topology,
    pub(crate) c: Clients,
    pub(crate) waits: Waits,
    /// Let `down` delete the buckets' objects; otherwise a non-empty bucket is kept and reported.
    pub(crate) purge_buckets: bool,
    /// The wrt binary `up` ships to the hosts.
    pub(crate) host_binary: Option<HostBinary>,
    /// The transform `up` deploys.
    pub(crate) transform: Option<TransformDeploy>,
    /// Where the plugin's downloads are kept between runs.
    pub(crate) downloads: PathBuf,
    /// Whether the endpoint has MSK Connect (moto has not).
    pub(crate) msk_connect: bool,
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
    /// For the hosts and the connector: whether they are doing their work.
    pub health: Option<Health>,
}

impl Found {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            change: Vec::new(),
            replace: Vec::new(),
            owned: true,
            health: None,
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
            host_binary: None,
            transform: None,
            downloads: default_downloads(),
            msk_connect: true,
        })
    }

    /// The wrt binary `up` uploads for the hosts (checked with [`HostBinary::check`]).
    pub fn with_host_binary(mut self, binary: HostBinary) -> Self {
        self.host_binary = Some(binary);
        self
    }

    /// The transform `up` deploys once the lake exists; without one the hosts wait for a deploy.
    pub fn with_transform(mut self, transform: TransformDeploy) -> Self {
        self.transform = Some(transform);
        self
    }

    /// Where the connector plugin's downloads are cached (default `~/.cache/wrt/downloads`).
    pub fn with_download_cache(mut self, dir: PathBuf) -> Self {
        self.downloads = dir;
        self
    }

    /// For an endpoint without MSK Connect (moto): the plugin zip is still assembled and
    /// uploaded, the MSK Connect resources are left out.
    pub fn without_msk_connect(mut self) -> Self {
        self.msk_connect = false;
        self
    }

    /// The resources this stack manages, in creation order.
    pub fn resources(&self) -> Vec<Resource> {
        let mut all = self.t.resources();
        if !self.msk_connect {
            all.retain(|r| {
                !matches!(
                    r,
                    Resource::WorkerConfiguration | Resource::CustomPlugin | Resource::Connector
                )
            });
        }
        all
    }

    pub(crate) fn host_binary(&self) -> Result<&HostBinary> {
        self.host_binary.as_ref().ok_or_else(|| Error::Artifact {
            field: "--wrt-binary".into(),
            message: "no wrt binary was given for the hosts".into(),
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
        for r in self.resources() {
            let found = self.observe(r, &ids).await?;
            steps.push(self.step(r, found, &mut ids));
        }
        Ok(self.plan_of(steps))
    }

    /// Creates what is missing and fixes what differs, in dependency order; returns what it did.
    pub async fn up(&self, progress: Progress<'_>) -> Result<Plan> {
        let mut ids = Ids::new();
        let mut steps = Vec::new();
        // Checked before anything is made (the hosts' wrt was checked when it was given).
        if self.resources().contains(&Resource::PluginArchive) {
            crate::plugin::Recipe::of(&self.t).check_pins()?;
        }
        for r in self.resources() {
            let found = self.observe(r, &ids).await?;
            let step = self.step(r, found, &mut ids);
            match &step.action {
                Action::Create => {
                    progress(&format!("creating {} {} ...", r.kind(), step.name));
                    let id = match self.create(r, &ids, progress).await {
                        Ok(id) => id,
                        // Someone (a run we interrupted, or a race) made it meanwhile: adopt it.
                        Err(e) if e.is_already_exists() => {
                            self.observe(r, &ids).await?.ok_or(e)?.id
                        }
                        Err(e) => return Err(e),
                    };
                    // A deploy just made is as wanted; checking the component again costs a load.
                    if r != Resource::Transform {
                        self.fix(r, &ids, &id).await?;
                    }
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
        for r in self.resources() {
            match self.observe_owned(r, &ids).await {
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

    pub(crate) fn step(&self, r: Resource, mut found: Option<Found>, ids: &mut Ids) -> Step {
        let health = found.as_mut().and_then(|f| f.health.take());
        let (id, action) = match found {
            _ if r == Resource::BinlogRetention => (None, Action::Deferred),
            // Nothing to deploy and nothing deployed: the hosts wait, and the plan says so.
            None if r == Resource::Transform && self.transform.is_none() => {
                (None, Action::Deferred)
            }
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
            detail: match (&action, r) {
                (Action::Deferred, Resource::Transform) => format!(
                    "nothing deployed: the hosts wait for `wrt infra up --transform t.wasm` \
                     (or `wrt deploy`) to s3://{}/_wrt/transforms/{}/",
                    self.t.lake_bucket(),
                    self.t.stack
                ),
                _ => self.t.describe(r),
            },
            action,
            health,
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
            Resource::GlueDatabase => self.observe_glue_database().await,
            Resource::HostBinary => match self.host_binary {
                Some(_) => self.observe_host_binary().await,
                // Nothing to compare with: any wrt uploaded before counts.
                None => self.owned_host_binaries().await,
            },
            Resource::PluginArchive => self.observe_plugin_archive().await,
            Resource::Transform => self.observe_transform().await,
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
            Resource::CustomPlugin => self.observe_custom_plugin(ids).await,
            Resource::Connector => self.observe_connector(ids).await,
        }
    }

    /// What `down` deletes of `r`: for what `up` ships under content digests, every version
    /// there is, whatever build or recipe put it there.
    async fn observe_owned(&self, r: Resource, ids: &Ids) -> Result<Option<Found>> {
        match r {
            Resource::HostBinary => self.owned_host_binaries().await,
            Resource::PluginArchive => self.owned_plugin_archives().await,
            Resource::Transform => self.owned_transforms().await,
            Resource::CustomPlugin => self.owned_custom_plugins().await,
            _ => self.observe(r, ids).await,
        }
    }

    async fn create(&self, r: Resource, ids: &Ids, progress: Progress<'_>) -> Result<String> {
        match r {
            Resource::Vpc => self.create_vpc().await,
            Resource::Subnet(tier, i) => self.create_subnet(tier, i, ids).await,
            Resource::InternetGateway => self.create_internet_gateway().await,
            Resource::ElasticIp => self.create_elastic_ip().await,
            Resource::NatGateway => self.create_nat_gateway(ids).await,
            Resource::RouteTable(tier) => self.create_route_table(tier, ids).await,
            Resource::SecurityGroup => self.create_security_group(ids).await,
            Resource::Bucket(b) => self.create_bucket(b).await,
            Resource::GlueDatabase => self.create_glue_database().await,
            Resource::HostBinary => self.upload_host_binary(progress).await,
            Resource::PluginArchive => self.upload_plugin_archive(progress).await,
            Resource::Transform => Ok(self.deploy_transform().await?.unwrap_or_default()),
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
            Resource::CustomPlugin => self.create_custom_plugin(ids).await,
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
            Resource::Transform => self.deploy_transform().await.map(drop),
            Resource::Connector => self.fix_connector(ids, id).await,
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
            Resource::GlueDatabase => self.delete_glue_database().await,
            Resource::HostBinary => self.delete_host_binaries().await,
            Resource::PluginArchive => self.delete_plugin_archives().await,
            Resource::Transform => self.delete_transforms().await,
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
            Resource::CustomPlugin => self.delete_custom_plugins().await,
            Resource::Connector => self.delete_connector(id).await,
        }
    }
}

/// `$XDG_CACHE_HOME/wrt/downloads`, else `~/.cache/wrt/downloads`, else a temporary folder.
fn default_downloads() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("wrt")
        .join("downloads")
}
