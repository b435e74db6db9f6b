//! MSK: the Kafka cluster Debezium writes to and wrt reads from.

use aws_sdk_kafka::types::{
    BrokerNodeGroupInfo, ClientAuthentication, ClusterState, EbsStorageInfo, Iam,
    ProvisionedRequest, Sasl, StorageInfo, Unauthenticated,
};

use crate::aws::wait_until;
use crate::error::{Error, Result, aws};
use crate::plan::{Resource, Tier};
use crate::stack::{Found, Ids, Stack};

impl Stack {
    pub(crate) async fn observe_kafka(&self) -> Result<Option<Found>> {
        let r = Resource::KafkaCluster;
        let name = self.t.name(r);
        let out = (self.c.kafka.list_clusters_v2().cluster_name_filter(&name))
            .send()
            .await
            .map_err(aws("kafka:ListClustersV2"))?;
        let mut live = out.cluster_info_list().iter().filter(|c| {
            c.cluster_name() == Some(name.as_str()) && c.state() != Some(&ClusterState::Deleting)
        });
        let Some(cluster) = live.next_back() else {
            return Ok(None);
        };
        let tags = cluster.tags().into_iter().flatten();
        self.claim(r, tags.map(|(k, v)| (k.as_str(), v.as_str())))?;
        Ok(Some(Found::new(cluster.cluster_arn().unwrap_or_default())))
    }

    /// Starts the cluster and returns without waiting: it takes 20-40 minutes, and only the
    /// connector needs it active (see [`Stack::kafka_bootstrap`]).
    pub(crate) async fn create_kafka(&self, ids: &Ids) -> Result<String> {
        let r = Resource::KafkaCluster;
        let k = &self.t.kafka;
        let subnets = (0..self.t.network.private_subnets.len())
            .map(|i| {
                self.need(ids, Resource::Subnet(Tier::Private, i))
                    .map(str::to_owned)
            })
            .collect::<Result<Vec<_>>>()?;
        let brokers = k.brokers_per_subnet * subnets.len() as i32;
        let storage = StorageInfo::builder()
            .ebs_storage_info(EbsStorageInfo::builder().volume_size(k.volume_gib).build())
            .build();
        let nodes = BrokerNodeGroupInfo::builder()
            .set_client_subnets(Some(subnets))
            .security_groups(self.need(ids, Resource::SecurityGroup)?)
            .instance_type(&k.broker_instance_type)
            .storage_info(storage)
            .build();
        // IAM is the hosts' listener (9098); the connector authenticates by TLS alone (9094).
        let auth = ClientAuthentication::builder()
            .sasl(
                Sasl::builder()
                    .iam(Iam::builder().enabled(true).build())
                    .build(),
            )
            .unauthenticated(Unauthenticated::builder().enabled(true).build())
            .build();
        let provisioned = ProvisionedRequest::builder()
            .broker_node_group_info(nodes)
            .client_authentication(auth)
            .kafka_version(&k.kafka_version)
            .number_of_broker_nodes(brokers)
            .build();
        let out = (self.c.kafka.create_cluster_v2())
            .cluster_name(self.t.name(r))
            .provisioned(provisioned)
            .tags(crate::aws::STACK_TAG, &self.t.stack)
            .tags("Name", self.t.name(r))
            .send()
            .await
            .map_err(aws("kafka:CreateClusterV2"))?;
        Ok(out.cluster_arn().unwrap_or_default().into())
    }

    async fn kafka_state(&self, arn: &str) -> Result<Option<ClusterState>> {
        match self
            .c
            .kafka
            .describe_cluster_v2()
            .cluster_arn(arn)
            .send()
            .await
        {
            Ok(out) => Ok(out.cluster_info().and_then(|c| c.state()).cloned()),
            Err(e) => match aws("kafka:DescribeClusterV2")(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Waits for the cluster to be active and returns its TLS bootstrap brokers.
    pub(crate) async fn kafka_bootstrap(&self, arn: &str) -> Result<String> {
        let name = self.t.name(Resource::KafkaCluster);
        wait_until(
            &name,
            "active",
            self.waits.kafka,
            self.waits.poll,
            || async {
                match self.kafka_state(arn).await? {
                    Some(ClusterState::Active) => Ok(true),
                    Some(ClusterState::Failed) | None => Err(Error::Conflict {
                        resource: format!("msk cluster {name}"),
                        message: "failed or vanished while being created; see the MSK console"
                            .into(),
                    }),
                    Some(_) => Ok(false),
                }
            },
        )
        .await?;
        let out = (self.c.kafka.get_bootstrap_brokers().cluster_arn(arn))
            .send()
            .await
            .map_err(aws("kafka:GetBootstrapBrokers"))?;
        Ok(out.bootstrap_broker_string_tls().unwrap_or_default().into())
    }

    pub(crate) async fn delete_kafka(&self, arn: &str) -> Result<()> {
        (self.c.kafka.delete_cluster().cluster_arn(arn).send().await)
            .map_err(aws("kafka:DeleteCluster"))?;
        // The subnets and security group stay busy until the brokers are gone. Polled by
        // listing: a deleted cluster leaves the list (moto answers describing it with a 500).
        let name = self.t.name(Resource::KafkaCluster);
        wait_until(
            &name,
            "deleted",
            self.waits.kafka,
            self.waits.poll,
            || async {
                let out = (self.c.kafka.list_clusters_v2().cluster_name_filter(&name))
                    .send()
                    .await
                    .map_err(aws("kafka:ListClustersV2"))?;
                let listed = out.cluster_info_list().iter();
                Ok(!listed.map(|c| c.cluster_arn()).any(|a| a == Some(arn)))
            },
        )
        .await
    }
}
