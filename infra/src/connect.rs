//! MSK Connect: the worker configuration, the Debezium custom plugin and the connector.
//!
//! moto does not implement MSK Connect, so these requests are unit-tested against recorded
//! request shapes (`fixtures/msk-connect/`) instead of a server.

use std::collections::HashMap;

use aws_sdk_kafkaconnect::error::BuildError;
use aws_sdk_kafkaconnect::operation::create_connector::builders::CreateConnectorFluentBuilder;
use aws_sdk_kafkaconnect::operation::create_custom_plugin::builders::CreateCustomPluginFluentBuilder;
use aws_sdk_kafkaconnect::operation::update_connector::builders::UpdateConnectorFluentBuilder;
use aws_sdk_kafkaconnect::types::{
    ApacheKafkaCluster, Capacity, ConnectorState, CustomPlugin, CustomPluginContentType,
    CustomPluginLocation, CustomPluginState, CustomPluginUpdate, KafkaCluster,
    KafkaClusterClientAuthentication, KafkaClusterClientAuthenticationType,
    KafkaClusterEncryptionInTransit, KafkaClusterEncryptionInTransitType, Plugin, PluginUpdate,
    ProvisionedCapacity, S3Location, Vpc, WorkerConfiguration,
};
use base64::Engine;

use crate::aws::{STACK_TAG, wait_until};
use crate::error::{Error, Result, aws};
use crate::plan::{Bucket, Health, Readiness, Resource, Tier};
use crate::stack::{Found, Ids, Stack};

/// A request that cannot be built is our bug, reported like a failed call.
fn built(op: &'static str) -> impl Fn(BuildError) -> Error {
    move |e| Error::Artifact {
        field: op.into(),
        message: format!("building the request failed (a bug in wrt): {e}"),
    }
}

/// Everything the connector request names, gathered from resources made earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorFacts {
    pub db_endpoint: String,
    pub bootstrap_servers: String,
    pub subnets: Vec<String>,
    pub security_group: String,
    pub role_arn: String,
    pub plugin: (String, i64),
    pub worker_configuration: (String, i64),
}

impl Stack {
    fn connect_tags(&self, r: Resource) -> HashMap<String, String> {
        HashMap::from([
            (STACK_TAG.to_owned(), self.t.stack.clone()),
            ("Name".to_owned(), self.t.name(r)),
        ])
    }

    /// The worker properties: JSON records, and the password resolved from Secrets Manager
    /// by the MSK config provider (bundled in the plugin zip) instead of sitting in the config.
    pub(crate) fn worker_properties(&self) -> String {
        format!(
            "key.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\n\
             config.providers=secretsmanager\n\
             config.providers.secretsmanager.class=com.amazonaws.kafka.config.providers.SecretsManagerConfigProvider\n\
             config.providers.secretsmanager.param.region={}\n",
            self.t.region
        )
    }

    /// The Debezium MySQL connector's configuration.
    pub(crate) fn connector_configuration(
        &self,
        facts: &ConnectorFacts,
    ) -> HashMap<String, String> {
        let db = &self.t.database;
        let c = &self.t.connector;
        [
            (
                "connector.class",
                "io.debezium.connector.mysql.MySqlConnector".into(),
            ),
            ("tasks.max", "1".into()),
            ("database.hostname", facts.db_endpoint.clone()),
            ("database.port", "3306".into()),
            ("database.user", db.master_username.clone()),
            (
                "database.password",
                format!(
                    "${{secretsmanager:{}:password}}",
                    self.t.name(Resource::DbSecret)
                ),
            ),
            ("database.server.id", c.server_id.to_string()),
            // MSK Connect restarts connectors that use a config provider often unless told not to.
            ("config.action.reload", "none".into()),
            ("database.include.list", db.database_name.clone()),
            ("topic.prefix", c.topic_prefix.clone()),
            ("include.schema.changes", "true".into()),
            (
                "schema.history.internal.kafka.bootstrap.servers",
                facts.bootstrap_servers.clone(),
            ),
            (
                "schema.history.internal.kafka.topic",
                format!("_schema-history.{}", c.topic_prefix),
            ),
            (
                "schema.history.internal.producer.security.protocol",
                "SSL".into(),
            ),
            (
                "schema.history.internal.consumer.security.protocol",
                "SSL".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The CreateConnector request.
    pub(crate) fn connector_request(
        &self,
        facts: &ConnectorFacts,
    ) -> Result<CreateConnectorFluentBuilder> {
        let op = "kafkaconnect:CreateConnector";
        let c = &self.t.connector;
        let r = Resource::Connector;
        let vpc = Vpc::builder()
            .set_subnets(Some(facts.subnets.clone()))
            .security_groups(&facts.security_group)
            .build()
            .map_err(built(op))?;
        let cluster = ApacheKafkaCluster::builder()
            .bootstrap_servers(&facts.bootstrap_servers)
            .vpc(vpc)
            .build()
            .map_err(built(op))?;
        let (plugin_arn, plugin_revision) = &facts.plugin;
        let plugin = CustomPlugin::builder()
            .custom_plugin_arn(plugin_arn)
            .revision(*plugin_revision)
            .build()
            .map_err(built(op))?;
        let (worker_arn, worker_revision) = &facts.worker_configuration;
        let worker = WorkerConfiguration::builder()
            .worker_configuration_arn(worker_arn)
            .revision(*worker_revision)
            .build()
            .map_err(built(op))?;
        let capacity = ProvisionedCapacity::builder()
            .mcu_count(c.mcu_count)
            .worker_count(c.workers)
            .build();
        Ok((self.c.connect.create_connector())
            .connector_name(self.t.name(r))
            .connector_description(format!(
                "wrt stack {}: {}",
                self.t.stack,
                self.t.describe(r)
            ))
            .capacity(Capacity::builder().provisioned_capacity(capacity).build())
            .set_connector_configuration(Some(self.connector_configuration(facts)))
            .kafka_cluster(
                KafkaCluster::builder()
                    .apache_kafka_cluster(cluster)
                    .build(),
            )
            .kafka_cluster_client_authentication(
                KafkaClusterClientAuthentication::builder()
                    .authentication_type(KafkaClusterClientAuthenticationType::None)
                    .build()
                    .map_err(built(op))?,
            )
            .kafka_cluster_encryption_in_transit(
                KafkaClusterEncryptionInTransit::builder()
                    .encryption_type(KafkaClusterEncryptionInTransitType::Tls)
                    .build()
                    .map_err(built(op))?,
            )
            .kafka_connect_version(&c.kafka_connect_version)
            .plugins(Plugin::builder().custom_plugin(plugin).build())
            .service_execution_role_arn(&facts.role_arn)
            .worker_configuration(worker)
            .set_tags(Some(self.connect_tags(r))))
    }

    /// Picks this stack's live item named like `r` from a listing of `(name, arn, deleting)`.
    async fn connect_find<'a>(
        &self,
        r: Resource,
        listed: impl Iterator<Item = (Option<&'a str>, Option<&'a str>, bool)>,
    ) -> Result<Option<Found>> {
        self.connect_find_named(r, &self.t.name(r), listed).await
    }

    /// Whether the MSK Connect resource `arn` carries this stack's tag.
    async fn connect_owned(&self, arn: &str) -> Result<bool> {
        let tags = (self.c.connect.list_tags_for_resource().resource_arn(arn))
            .send()
            .await
            .map_err(aws("kafkaconnect:ListTagsForResource"))?;
        let tags = tags.tags().into_iter().flatten();
        Ok(crate::aws::tagged(
            tags.map(|(k, v)| (k.as_str(), v.as_str())),
            &self.t.stack,
        ))
    }

    /// Picks this stack's live item called `name` from a listing of `(name, arn, deleting)`.
    async fn connect_find_named<'a>(
        &self,
        r: Resource,
        name: &str,
        listed: impl Iterator<Item = (Option<&'a str>, Option<&'a str>, bool)>,
    ) -> Result<Option<Found>> {
        let arn = listed
            .filter(|(n, _, deleting)| *n == Some(name) && !deleting)
            .find_map(|(_, arn, _)| arn);
        let Some(arn) = arn else { return Ok(None) };
        let tags = (self.c.connect.list_tags_for_resource().resource_arn(arn))
            .send()
            .await
            .map_err(aws("kafkaconnect:ListTagsForResource"))?;
        let tags = tags.tags().into_iter().flatten();
        self.claim(r, tags.map(|(k, v)| (k.as_str(), v.as_str())))?;
        Ok(Some(Found::new(arn)))
    }

    pub(crate) async fn observe_worker_configuration(&self) -> Result<Option<Found>> {
        let r = Resource::WorkerConfiguration;
        let out = (self
            .c
            .connect
            .list_worker_configurations()
            .name_prefix(self.t.name(r)))
        .send()
        .await
        .map_err(aws("kafkaconnect:ListWorkerConfigurations"))?;
        let listed = out.worker_configurations().iter().map(|w| {
            let deleting = w
                .worker_configuration_state()
                .is_some_and(|s| s.as_str() == "DELETING");
            (w.name(), w.worker_configuration_arn(), deleting)
        });
        self.connect_find(r, listed).await
    }

    pub(crate) async fn create_worker_configuration(&self) -> Result<String> {
        let r = Resource::WorkerConfiguration;
        let properties = base64::engine::general_purpose::STANDARD.encode(self.worker_properties());
        let out = (self.c.connect.create_worker_configuration())
            .name(self.t.name(r))
            .description(format!(
                "wrt stack {}: {}",
                self.t.stack,
                self.t.describe(r)
            ))
            .properties_file_content(properties)
            .set_tags(Some(self.connect_tags(r)))
            .send()
            .await
            .map_err(aws("kafkaconnect:CreateWorkerConfiguration"))?;
        Ok(out.worker_configuration_arn().unwrap_or_default().into())
    }

    pub(crate) async fn delete_worker_configuration(&self, arn: &str) -> Result<()> {
        (self
            .c
            .connect
            .delete_worker_configuration()
            .worker_configuration_arn(arn))
        .send()
        .await
        .map_err(aws("kafkaconnect:DeleteWorkerConfiguration"))?;
        Ok(())
    }

    /// The custom plugin made from the plugin zip `archive_key` names: one per zip, because
    /// MSK Connect copies a plugin's zip when it is created and never updates it.
    fn plugin_name(&self, archive_key: &str) -> String {
        let digest = (archive_key.rsplit('-').next())
            .and_then(|d| d.strip_suffix(".zip"))
            .unwrap_or(archive_key);
        format!(
            "{}-{}",
            self.t.name(Resource::CustomPlugin),
            &digest[..digest.len().min(12)]
        )
    }

    /// Every custom plugin named like this stack's and not being deleted: `(name, arn)`.
    async fn custom_plugins(&self) -> Result<Vec<(String, String)>> {
        let prefix = format!("{}-", self.t.name(Resource::CustomPlugin));
        let out = (self.c.connect.list_custom_plugins().name_prefix(&prefix))
            .send()
            .await
            .map_err(aws("kafkaconnect:ListCustomPlugins"))?;
        Ok(out
            .custom_plugins()
            .iter()
            .filter(|p| p.custom_plugin_state() != Some(&CustomPluginState::Deleting))
            .filter_map(|p| Some((p.name()?.to_owned(), p.custom_plugin_arn()?.to_owned())))
            .collect())
    }

    pub(crate) async fn observe_custom_plugin(&self, ids: &Ids) -> Result<Option<Found>> {
        // No zip yet: the plugin made from it cannot exist either.
        let Some(archive) = ids.get(&Resource::PluginArchive) else {
            return Ok(None);
        };
        let name = self.plugin_name(archive);
        let plugins = self.custom_plugins().await?;
        let listed = plugins
            .iter()
            .map(|(n, arn)| (Some(n.as_str()), Some(arn.as_str()), false));
        self.connect_find_named(Resource::CustomPlugin, &name, listed)
            .await
    }

    /// Every plugin of this stack, for `down` (older zips leave older plugins behind).
    pub(crate) async fn owned_custom_plugins(&self) -> Result<Option<Found>> {
        let mut owned = Vec::new();
        for (_, arn) in self.custom_plugins().await? {
            if self.connect_owned(&arn).await? {
                owned.push(arn);
            }
        }
        Ok((!owned.is_empty()).then(|| Found::new(owned.join(","))))
    }

    /// The CreateCustomPlugin request for the zip at `archive_key`.
    pub(crate) fn custom_plugin_request(
        &self,
        archive_key: &str,
    ) -> Result<CreateCustomPluginFluentBuilder> {
        let op = "kafkaconnect:CreateCustomPlugin";
        let r = Resource::CustomPlugin;
        let location = S3Location::builder()
            .bucket_arn(self.bucket_arn(Bucket::Registry))
            .file_key(archive_key)
            .build()
            .map_err(built(op))?;
        Ok((self.c.connect.create_custom_plugin())
            .name(self.plugin_name(archive_key))
            .description(format!(
                "wrt stack {}: {}",
                self.t.stack,
                self.t.describe(Resource::PluginArchive)
            ))
            .content_type(CustomPluginContentType::Zip)
            .location(
                CustomPluginLocation::builder()
                    .s3_location(location)
                    .build(),
            )
            .set_tags(Some(self.connect_tags(r))))
    }

    pub(crate) async fn create_custom_plugin(&self, ids: &Ids) -> Result<String> {
        let archive = self.need(ids, Resource::PluginArchive)?;
        let out = self
            .custom_plugin_request(archive)?
            .send()
            .await
            .map_err(aws("kafkaconnect:CreateCustomPlugin"))?;
        let arn = out.custom_plugin_arn().unwrap_or_default();
        self.plugin_revision(arn, true).await?;
        Ok(arn.into())
    }

    /// The plugin's latest revision; with `wait`, once MSK Connect has unpacked it.
    async fn plugin_revision(&self, arn: &str, wait: bool) -> Result<i64> {
        let name = self.t.name(Resource::CustomPlugin);
        let revision = std::cell::Cell::new(0);
        let limit = if wait {
            self.waits.connector
        } else {
            Default::default()
        };
        wait_until(&name, "active", limit, self.waits.poll, || async {
            let out = (self
                .c
                .connect
                .describe_custom_plugin()
                .custom_plugin_arn(arn))
            .send()
            .await
            .map_err(aws("kafkaconnect:DescribeCustomPlugin"))?;
            revision.set(out.latest_revision().map(|r| r.revision()).unwrap_or(1));
            match out.custom_plugin_state() {
                Some(CustomPluginState::CreateFailed) => Err(Error::Conflict {
                    resource: format!("custom plugin {name}"),
                    message: "MSK Connect could not read the plugin zip".into(),
                }),
                state => Ok(!wait || state == Some(&CustomPluginState::Active)),
            }
        })
        .await?;
        Ok(revision.get())
    }

    pub(crate) async fn delete_custom_plugins(&self) -> Result<()> {
        for (_, arn) in self.custom_plugins().await? {
            if self.connect_owned(&arn).await? {
                (self
                    .c
                    .connect
                    .delete_custom_plugin()
                    .custom_plugin_arn(&arn))
                .send()
                .await
                .map_err(aws("kafkaconnect:DeleteCustomPlugin"))?;
            }
        }
        Ok(())
    }

    pub(crate) async fn observe_connector(&self, ids: &Ids) -> Result<Option<Found>> {
        let r = Resource::Connector;
        let out = (self
            .c
            .connect
            .list_connectors()
            .connector_name_prefix(self.t.name(r)))
        .send()
        .await
        .map_err(aws("kafkaconnect:ListConnectors"))?;
        let listed = out.connectors().iter().map(|c| {
            let deleting = c.connector_state() == Some(&ConnectorState::Deleting);
            (c.connector_name(), c.connector_arn(), deleting)
        });
        let Some(mut found) = self.connect_find(r, listed).await? else {
            return Ok(None);
        };
        let summary =
            (out.connectors().iter()).find(|c| c.connector_arn() == Some(found.id.as_str()));
        let running = summary
            .into_iter()
            .flat_map(|c| c.plugins())
            .filter_map(|p| p.custom_plugin())
            .find_map(|p| p.custom_plugin_arn())
            .unwrap_or_default()
            .to_owned();
        if let Some(wanted) = ids.get(&Resource::CustomPlugin) {
            found.change_unless(running == *wanted, || {
                format!("runs plugin {running}, want {wanted} (a new plugin zip)")
            });
        }
        let state = summary.and_then(|c| c.connector_state());
        found.health = Some(match state {
            Some(ConnectorState::Running) => Health::new(Readiness::Ready, "RUNNING"),
            // Only a failed connector's description is worth the extra call: it says why.
            Some(ConnectorState::Failed) => {
                let out = (self.c.connect.describe_connector())
                    .connector_arn(&found.id)
                    .send()
                    .await
                    .map_err(aws("kafkaconnect:DescribeConnector"))?;
                let why = out.state_description().map_or_else(
                    || "no reason given; the connector's logs say more".to_owned(),
                    |d| {
                        let code = d.code().unwrap_or("no code");
                        format!("{code}: {}", d.message().unwrap_or("no message"))
                    },
                );
                Health::new(Readiness::Failed, format!("FAILED: {why}"))
            }
            Some(other) => Health::new(Readiness::Waiting, other.as_str()),
            None => Health::new(Readiness::Waiting, "in an unknown state"),
        });
        Ok(Some(found))
    }

    /// The UpdateConnector request that moves connector `arn` (at `current_version`) to
    /// `plugin` = (arn, revision).
    pub(crate) fn connector_update_request(
        &self,
        arn: &str,
        current_version: &str,
        plugin: (&str, i64),
    ) -> Result<UpdateConnectorFluentBuilder> {
        let op = "kafkaconnect:UpdateConnector";
        let custom = CustomPluginUpdate::builder()
            .custom_plugin_arn(plugin.0)
            .revision(plugin.1)
            .build()
            .map_err(built(op))?;
        Ok((self.c.connect.update_connector())
            .connector_arn(arn)
            .current_version(current_version)
            .plugins(PluginUpdate::builder().custom_plugin(custom).build()))
    }

    /// Moves the connector to the current plugin (MSK Connect rolls it back by itself if it
    /// does not come up healthy).
    pub(crate) async fn fix_connector(&self, ids: &Ids, arn: &str) -> Result<()> {
        let Some(plugin) = ids.get(&Resource::CustomPlugin) else {
            return Ok(());
        };
        let out = (self.c.connect.describe_connector().connector_arn(arn))
            .send()
            .await
            .map_err(aws("kafkaconnect:DescribeConnector"))?;
        let running = (out.plugins().iter())
            .filter_map(|p| p.custom_plugin())
            .any(|p| p.custom_plugin_arn() == Some(plugin.as_str()));
        if running {
            return Ok(());
        }
        let revision = self.plugin_revision(plugin, false).await?;
        self.connector_update_request(
            arn,
            out.current_version().unwrap_or_default(),
            (plugin, revision),
        )?
        .send()
        .await
        .map_err(aws("kafkaconnect:UpdateConnector"))?;
        self.wait_running(arn).await
    }

    async fn connector_state(&self, arn: &str) -> Result<Option<ConnectorState>> {
        match self
            .c
            .connect
            .describe_connector()
            .connector_arn(arn)
            .send()
            .await
        {
            Ok(out) => Ok(out.connector_state().cloned()),
            Err(e) => match aws("kafkaconnect:DescribeConnector")(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    pub(crate) async fn create_connector(&self, ids: &Ids) -> Result<String> {
        let subnets = (0..self.t.network.private_subnets.len())
            .map(|i| {
                self.need(ids, Resource::Subnet(Tier::Private, i))
                    .map(str::to_owned)
            })
            .collect::<Result<Vec<_>>>()?;
        let plugin = self.need(ids, Resource::CustomPlugin)?;
        let worker = self.need(ids, Resource::WorkerConfiguration)?;
        let worker_revision = (self.c.connect.describe_worker_configuration())
            .worker_configuration_arn(worker)
            .send()
            .await
            .map_err(aws("kafkaconnect:DescribeWorkerConfiguration"))?
            .latest_revision()
            .map(|r| r.revision())
            .unwrap_or(1);
        let facts = ConnectorFacts {
            db_endpoint: self.db_endpoint().await?,
            bootstrap_servers: self
                .kafka_bootstrap(self.need(ids, Resource::KafkaCluster)?)
                .await?,
            subnets,
            security_group: self.need(ids, Resource::SecurityGroup)?.into(),
            role_arn: self.need(ids, Resource::ConnectorRole)?.into(),
            plugin: (plugin.into(), self.plugin_revision(plugin, false).await?),
            worker_configuration: (worker.into(), worker_revision),
        };
        let out = self
            .connector_request(&facts)?
            .send()
            .await
            .map_err(aws("kafkaconnect:CreateConnector"))?;
        let arn = out.connector_arn().unwrap_or_default().to_owned();
        self.wait_running(&arn).await?;
        Ok(arn)
    }

    async fn wait_running(&self, arn: &str) -> Result<()> {
        let name = self.t.name(Resource::Connector);
        wait_until(
            &name,
            "running",
            self.waits.connector,
            self.waits.poll,
            || async {
                match self.connector_state(arn).await? {
                    Some(ConnectorState::Running) => Ok(true),
                    Some(ConnectorState::Failed) | None => Err(Error::Conflict {
                        resource: format!("msk connector {name}"),
                        message: "failed to start; its logs are in the MSK Connect console".into(),
                    }),
                    Some(_) => Ok(false),
                }
            },
        )
        .await
    }

    pub(crate) async fn delete_connector(&self, arn: &str) -> Result<()> {
        (self.c.connect.delete_connector().connector_arn(arn))
            .send()
            .await
            .map_err(aws("kafkaconnect:DeleteConnector"))?;
        let name = self.t.name(Resource::Connector);
        wait_until(
            &name,
            "deleted",
            self.waits.connector,
            self.waits.poll,
            || async { Ok(self.connector_state(arn).await?.is_none()) },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_http_client::test_util::{
        CaptureRequestReceiver, ReplayEvent, StaticReplayClient, capture_request,
    };
    use serde_json::Value;

    use super::*;
    use crate::aws::offline_config as config;
    use crate::config::Topology;

    /// A stack whose one call is captured instead of sent, and answered with `status`.
    fn answering(status: u16) -> (Stack, CaptureRequestReceiver) {
        let response = http::Response::builder()
            .status(status)
            .body(aws_sdk_s3::primitives::SdkBody::empty())
            .unwrap();
        let (http, requests) = capture_request(Some(response));
        (
            Stack::new(Topology::default(), &config(http)).unwrap(),
            requests,
        )
    }

    fn captured() -> (Stack, CaptureRequestReceiver) {
        answering(200)
    }

    /// The recorded shape: method, path, and JSON body (`_source` says where it comes from).
    fn recorded(fixture: &str) -> Value {
        let mut shape: Value = serde_json::from_str(fixture).expect("a JSON fixture");
        shape.as_object_mut().unwrap().remove("_source");
        shape
    }

    fn sent(requests: CaptureRequestReceiver) -> Value {
        let request = requests.expect_request();
        let body: Value = serde_json::from_slice(request.body().bytes().unwrap()).unwrap();
        serde_json::json!({
            "method": request.method(),
            "path": request.uri().split_once(".com").map_or(request.uri(), |(_, p)| p),
            "body": body,
        })
    }

    fn facts() -> ConnectorFacts {
        ConnectorFacts {
            db_endpoint: "wrt-db.c1.us-west-2.rds.amazonaws.com".into(),
            bootstrap_servers: "b-1.wrtkafka.kafka.us-west-2.amazonaws.com:9094,b-2.wrtkafka.kafka.us-west-2.amazonaws.com:9094".into(),
            subnets: vec!["subnet-0private1".into(), "subnet-0private2".into()],
            security_group: "sg-0wrt".into(),
            role_arn: "arn:aws:iam::123456789012:role/wrt-connector".into(),
            plugin: ("arn:aws:kafkaconnect:us-west-2:123456789012:custom-plugin/wrt-debezium-0f1e2d3c4b5a/1".into(), 1),
            worker_configuration: ("arn:aws:kafkaconnect:us-west-2:123456789012:worker-configuration/wrt-worker/1".into(), 1),
        }
    }

    #[tokio::test]
    async fn create_connector_matches_the_recorded_request() {
        let (stack, requests) = captured();
        // The canned empty answer does not matter: only the request is under test.
        let _ = stack.connector_request(&facts()).unwrap().send().await;
        assert_eq!(
            sent(requests),
            recorded(include_str!(
                "../fixtures/msk-connect/create-connector.json"
            ))
        );
    }

    #[tokio::test]
    async fn create_worker_configuration_matches_the_recorded_request() {
        let (stack, requests) = captured();
        let _ = stack.create_worker_configuration().await;
        let mut request = sent(requests);
        let encoded = request["body"]["propertiesFileContent"].take();
        let properties = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(properties).unwrap(),
            stack.worker_properties()
        );
        request["body"]["propertiesFileContent"] = "<base64 of the worker properties>".into();
        assert_eq!(
            request,
            recorded(include_str!(
                "../fixtures/msk-connect/create-worker-configuration.json"
            ))
        );
    }

    /// The zip `up` uploads for the default recipe, as the tests name it.
    const ARCHIVE: &str = "plugins/debezium-connector-mysql-3.4.0.Final-\
        0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0.zip";

    #[tokio::test]
    async fn create_custom_plugin_matches_the_recorded_request() {
        let (stack, requests) = captured();
        let _ = stack.custom_plugin_request(ARCHIVE).unwrap().send().await;
        let mut expected = recorded(include_str!(
            "../fixtures/msk-connect/create-custom-plugin.json"
        ));
        // The fixture pins the stack's Debezium version; the default follows the local stack.
        let version = &stack.t.connector.debezium_version;
        let text = serde_json::to_string(&expected)
            .unwrap()
            .replace("3.4.0.Final", version);
        expected = serde_json::from_str(&text).unwrap();
        assert_eq!(sent(requests), expected);
    }

    /// A new plugin zip makes a new custom plugin (MSK Connect never updates one in place),
    /// and the connector moves to it, named with its revision.
    #[tokio::test]
    async fn a_new_plugin_moves_the_connector_to_it() {
        let (stack, requests) = captured();
        let connector =
            "arn:aws:kafkaconnect:us-west-2:123456789012:connector/wrt-debezium-mysql/1";
        let plugin =
            "arn:aws:kafkaconnect:us-west-2:123456789012:custom-plugin/wrt-debezium-0f1e2d3c4b5a/2";
        let _ = stack
            .connector_update_request(connector, "3", (plugin, 1))
            .unwrap()
            .send()
            .await;
        assert_eq!(
            sent(requests),
            recorded(include_str!(
                "../fixtures/msk-connect/update-connector.json"
            ))
        );
        assert_eq!(stack.plugin_name(ARCHIVE), "wrt-debezium-0f1e2d3c4b5a");
    }

    /// An HTTP answer with a JSON body.
    fn json_answer(body: &Value) -> http::Response<aws_sdk_s3::primitives::SdkBody> {
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body.to_string().into())
            .unwrap()
    }

    /// `status` on a FAILED connector: the first word says so, the line says why, from
    /// DescribeConnector's state description (an answer in the API reference's documented
    /// shape, `fixtures/msk-connect/describe-connector-failed.json`; not a captured one).
    #[tokio::test]
    async fn a_failed_connector_shows_its_reason_in_status() {
        let described: Value = serde_json::from_str(include_str!(
            "../fixtures/msk-connect/describe-connector-failed.json"
        ))
        .unwrap();
        let arn = described["body"]["connectorArn"].as_str().unwrap();
        let listed = serde_json::json!({ "connectors": [{
            "connectorArn": arn,
            "connectorName": "wrt-debezium-mysql",
            "connectorState": "FAILED",
            "plugins": described["body"]["plugins"],
        }]});
        let tags =
            serde_json::json!({ "tags": { "wrt:stack": "wrt", "Name": "wrt-debezium-mysql" } });
        let request = || {
            http::Request::builder()
                .uri("https://kafkaconnect.us-west-2.amazonaws.com/")
                .body(aws_sdk_s3::primitives::SdkBody::empty())
                .unwrap()
        };
        let http = StaticReplayClient::new(vec![
            ReplayEvent::new(request(), json_answer(&listed)),
            ReplayEvent::new(request(), json_answer(&tags)),
            ReplayEvent::new(request(), json_answer(&described["body"])),
        ]);
        let stack = Stack::new(Topology::default(), &config(http.clone())).unwrap();
        let found = stack.observe_connector(&Ids::new()).await.unwrap();
        let step = stack.step(Resource::Connector, found, &mut Ids::new());
        assert_eq!(
            step.status_line(),
            format!(
                "failed   msk connector        wrt-debezium-mysql    {arn}  \
                 FAILED: UnknownError: The last operation failed. Retry the operation."
            )
        );
        let paths: Vec<String> = http.actual_requests().map(|r| r.uri().to_owned()).collect();
        assert!(paths[2].ends_with(&urlencode(arn)), "{paths:?}");
    }

    /// The connector ARN as it appears in a request path.
    fn urlencode(arn: &str) -> String {
        arn.replace(':', "%3A").replace('/', "%2F")
    }

    #[test]
    fn the_password_stays_a_reference() {
        let (mut stack, _) = captured();
        stack.t.database.literal_password = Some("Bespin12!".into());
        let config = stack.connector_configuration(&facts());
        assert_eq!(
            config["database.password"],
            "${secretsmanager:wrt/db-master:password}"
        );
        assert!(config.values().all(|v| !v.contains("Bespin")), "{config:?}");
        // The worker configuration names the provider the plugin zip carries.
        assert!(stack.worker_properties().contains(
            "config.providers.secretsmanager.class=com.amazonaws.kafka.config.providers.SecretsManagerConfigProvider"
        ));
    }
}
