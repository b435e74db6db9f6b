//! IAM: the hosts' role and instance profile, and MSK Connect's execution role, each
//! allowed only what it needs.

use aws_sdk_iam::types::Tag;
use serde_json::{Value, json};

use crate::aws::STACK_TAG;
use crate::error::{Result, aws};
use crate::hosts::READY_TAG;
use crate::plan::{Bucket, Resource};
use crate::stack::{Found, Ids, Stack};

/// IAM hands policy documents back URL-encoded.
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a policy document IAM returned says the same as `want`.
fn same_policy(have: Option<&str>, want: &Value) -> bool {
    have.and_then(|h| serde_json::from_str::<Value>(&url_decode(h)).ok())
        .is_some_and(|h| &h == want)
}

fn statement(actions: &[&str], resources: &[String]) -> Value {
    json!({ "Effect": "Allow", "Action": actions, "Resource": resources })
}

impl Stack {
    /// `arn:<partition>`, for the region's partition.
    fn arn_prefix(&self) -> &'static str {
        match &self.t.region {
            r if r.starts_with("cn-") => "arn:aws-cn",
            r if r.starts_with("us-gov-") => "arn:aws-us-gov",
            _ => "arn:aws",
        }
    }

    pub(crate) fn bucket_arn(&self, b: Bucket) -> String {
        format!(
            "{}:s3:::{}",
            self.arn_prefix(),
            self.t.name(Resource::Bucket(b))
        )
    }

    fn trust_policy(r: Resource) -> Value {
        let service = match r {
            Resource::ConnectorRole => "kafkaconnect.amazonaws.com",
            _ => "ec2.amazonaws.com",
        };
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": service },
                "Action": "sts:AssumeRole",
            }],
        })
    }

    /// The role's inline policy; it names resources found earlier, so it needs their ids.
    fn role_policy(&self, r: Resource, ids: &Ids) -> Result<Value> {
        let secret = self.need(ids, Resource::DbSecret)?.to_owned();
        let registry = self.bucket_arn(Bucket::Registry);
        let statements = match r {
            Resource::ConnectorRole => vec![
                // The plugin zip, and the master password through the config provider.
                statement(
                    &["s3:GetObject"],
                    &[format!("{registry}/{}*", crate::plugin::KEY_PREFIX)],
                ),
                statement(&["secretsmanager:GetSecretValue"], &[secret]),
            ],
            _ => {
                let lake = self.bucket_arn(Bucket::Lake);
                let cluster = self.need(ids, Resource::KafkaCluster)?.to_owned();
                let mut statements = vec![
                    statement(&["s3:ListBucket"], &[lake.clone(), registry.clone()]),
                    statement(
                        &["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                        &[format!("{lake}/*")],
                    ),
                    statement(&["s3:GetObject"], &[format!("{registry}/*")]),
                    // Brokers are looked up at boot; the password sets binlog retention once.
                    statement(
                        &["kafka:GetBootstrapBrokers", "kafka:DescribeClusterV2"],
                        std::slice::from_ref(&cluster),
                    ),
                    // wrt's consumer over MSK IAM: the cluster, its topics and its groups,
                    // whose ARNs are the cluster's with `topic/` or `group/` and a name.
                    statement(
                        &[
                            "kafka-cluster:Connect",
                            "kafka-cluster:DescribeTopic",
                            "kafka-cluster:ReadData",
                            "kafka-cluster:DescribeGroup",
                            "kafka-cluster:AlterGroup",
                        ],
                        &[
                            cluster.clone(),
                            format!("{}/*", cluster.replacen(":cluster/", ":topic/", 1)),
                            format!("{}/*", cluster.replacen(":cluster/", ":group/", 1)),
                        ],
                    ),
                    statement(&["secretsmanager:GetSecretValue"], &[secret]),
                    self.readiness_statement(),
                ];
                statements.extend(self.glue_statement());
                statements
            }
        };
        Ok(json!({ "Version": "2012-10-17", "Statement": statements }))
    }

    /// The catalog calls a host makes (`runtime/src/pipeline/catalog/glue.rs`), on the
    /// stack's database and its tables only; not CreateDatabase, since `up` made it.
    fn glue_statement(&self) -> Option<Value> {
        let database = self.t.storage.glue_database.as_ref()?;
        let glue = format!("{}:glue:{}:*", self.arn_prefix(), self.t.region);
        Some(statement(
            &[
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:CreateTable",
                "glue:UpdateTable",
                "glue:GetPartitions",
                "glue:BatchCreatePartition",
                "glue:BatchUpdatePartition",
            ],
            &[
                format!("{glue}:catalog"),
                format!("{glue}:database/{database}"),
                format!("{glue}:table/{database}/*"),
            ],
        ))
    }

    /// The hosts' readiness report: the one tag, on this stack's instances only. Not narrowed
    /// to the calling instance itself: that needs comparing the target with
    /// `ec2:SourceInstanceARN` through a policy variable, which no offline test can try, and a
    /// condition that never matches would silence every report.
    fn readiness_statement(&self) -> Value {
        let mut condition = serde_json::Map::new();
        condition.insert(
            "StringEquals".into(),
            json!({ format!("ec2:ResourceTag/{STACK_TAG}"): self.t.stack }),
        );
        condition.insert(
            "ForAllValues:StringEquals".into(),
            json!({ "aws:TagKeys": [READY_TAG] }),
        );
        json!({
            "Effect": "Allow",
            "Action": ["ec2:CreateTags"],
            "Resource": [format!("{}:ec2:{}:*:instance/*", self.arn_prefix(), self.t.region)],
            "Condition": condition,
        })
    }

    fn iam_tags(&self, r: Resource) -> [Tag; 2] {
        let tag = |k: &str, v: String| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .expect("key and value are set")
        };
        [
            tag(STACK_TAG, self.t.stack.clone()),
            tag("Name", self.t.name(r)),
        ]
    }

    pub(crate) async fn observe_role(&self, r: Resource, ids: &Ids) -> Result<Option<Found>> {
        let name = self.t.name(r);
        let role = match self.c.iam.get_role().role_name(&name).send().await {
            Ok(out) => out.role,
            Err(e) => match aws("iam:GetRole")(e) {
                e if e.is_not_found() => return Ok(None),
                e => return Err(e),
            },
        };
        let Some(role) = role else { return Ok(None) };
        self.claim(r, role.tags().iter().map(|t| (t.key(), t.value())))?;
        let mut found = Found::new(role.arn());
        let trusted = same_policy(role.assume_role_policy_document(), &Self::trust_policy(r));
        found.change_unless(trusted, || "trust policy differs".into());
        let policy = match self
            .c
            .iam
            .get_role_policy()
            .role_name(&name)
            .policy_name(&name)
            .send()
            .await
        {
            Ok(out) => Some(out.policy_document),
            Err(e) => match aws("iam:GetRolePolicy")(e) {
                e if e.is_not_found() => None,
                e => return Err(e),
            },
        };
        let allowed = match self.role_policy(r, ids) {
            Ok(want) => same_policy(policy.as_deref(), &want),
            Err(_) => false,
        };
        found.change_unless(allowed, || "permissions differ".into());
        Ok(Some(found))
    }

    pub(crate) async fn create_role(&self, r: Resource) -> Result<String> {
        let out = (self.c.iam.create_role())
            .role_name(self.t.name(r))
            .assume_role_policy_document(Self::trust_policy(r).to_string())
            .description(format!(
                "wrt stack {}: {}",
                self.t.stack,
                self.t.describe(r)
            ))
            .set_tags(Some(self.iam_tags(r).to_vec()))
            .send()
            .await
            .map_err(aws("iam:CreateRole"))?;
        Ok(out.role.map(|r| r.arn).unwrap_or_default())
    }

    pub(crate) async fn fix_role(&self, r: Resource, ids: &Ids) -> Result<()> {
        let name = self.t.name(r);
        (self.c.iam.update_assume_role_policy())
            .role_name(&name)
            .policy_document(Self::trust_policy(r).to_string())
            .send()
            .await
            .map_err(aws("iam:UpdateAssumeRolePolicy"))?;
        (self.c.iam.put_role_policy())
            .role_name(&name)
            .policy_name(&name)
            .policy_document(self.role_policy(r, ids)?.to_string())
            .send()
            .await
            .map_err(aws("iam:PutRolePolicy"))?;
        Ok(())
    }

    pub(crate) async fn delete_role(&self, r: Resource) -> Result<()> {
        let name = self.t.name(r);
        let policies = (self.c.iam.list_role_policies().role_name(&name))
            .send()
            .await
            .map_err(aws("iam:ListRolePolicies"))?;
        for policy in policies.policy_names() {
            (self
                .c
                .iam
                .delete_role_policy()
                .role_name(&name)
                .policy_name(policy))
            .send()
            .await
            .map_err(aws("iam:DeleteRolePolicy"))?;
        }
        let profiles = (self
            .c
            .iam
            .list_instance_profiles_for_role()
            .role_name(&name))
        .send()
        .await
        .map_err(aws("iam:ListInstanceProfilesForRole"))?;
        for profile in profiles.instance_profiles() {
            (self.c.iam.remove_role_from_instance_profile())
                .instance_profile_name(profile.instance_profile_name())
                .role_name(&name)
                .send()
                .await
                .map_err(aws("iam:RemoveRoleFromInstanceProfile"))?;
        }
        (self.c.iam.delete_role().role_name(&name).send().await).map_err(aws("iam:DeleteRole"))?;
        Ok(())
    }

    async fn instance_profile(&self) -> Result<Option<aws_sdk_iam::types::InstanceProfile>> {
        let name = self.t.name(Resource::HostProfile);
        match self
            .c
            .iam
            .get_instance_profile()
            .instance_profile_name(&name)
            .send()
            .await
        {
            Ok(out) => Ok(out.instance_profile),
            Err(e) => match aws("iam:GetInstanceProfile")(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    pub(crate) async fn observe_instance_profile(&self) -> Result<Option<Found>> {
        let r = Resource::HostProfile;
        let Some(profile) = self.instance_profile().await? else {
            return Ok(None);
        };
        self.claim(r, profile.tags().iter().map(|t| (t.key(), t.value())))?;
        let mut found = Found::new(profile.arn());
        let role = self.t.name(Resource::HostRole);
        let carries = profile.roles().iter().any(|r| r.role_name() == role);
        found.change_unless(carries, || format!("does not carry role {role}"));
        Ok(Some(found))
    }

    pub(crate) async fn create_instance_profile(&self) -> Result<String> {
        let r = Resource::HostProfile;
        let out = (self.c.iam.create_instance_profile())
            .instance_profile_name(self.t.name(r))
            .set_tags(Some(self.iam_tags(r).to_vec()))
            .send()
            .await
            .map_err(aws("iam:CreateInstanceProfile"))?;
        Ok(out.instance_profile.map(|p| p.arn).unwrap_or_default())
    }

    pub(crate) async fn fix_instance_profile(&self) -> Result<()> {
        let role = self.t.name(Resource::HostRole);
        let profile = self.instance_profile().await?;
        let carries = profile.is_some_and(|p| p.roles().iter().any(|r| r.role_name() == role));
        if !carries {
            (self.c.iam.add_role_to_instance_profile())
                .instance_profile_name(self.t.name(Resource::HostProfile))
                .role_name(role)
                .send()
                .await
                .map_err(aws("iam:AddRoleToInstanceProfile"))?;
        }
        Ok(())
    }

    pub(crate) async fn delete_instance_profile(&self) -> Result<()> {
        let name = self.t.name(Resource::HostProfile);
        let roles = self
            .instance_profile()
            .await?
            .map(|p| p.roles)
            .unwrap_or_default();
        for role in roles {
            (self.c.iam.remove_role_from_instance_profile())
                .instance_profile_name(&name)
                .role_name(role.role_name)
                .send()
                .await
                .map_err(aws("iam:RemoveRoleFromInstanceProfile"))?;
        }
        (self
            .c
            .iam
            .delete_instance_profile()
            .instance_profile_name(&name)
            .send()
            .await)
            .map_err(aws("iam:DeleteInstanceProfile"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_compare_after_url_decoding() {
        let want = json!({ "Version": "2012-10-17", "Statement": [] });
        let encoded = "%7B%22Statement%22%3A%5B%5D%2C%22Version%22%3A%222012-10-17%22%7D";
        assert!(same_policy(Some(encoded), &want));
        assert!(same_policy(Some(&want.to_string()), &want));
        assert!(!same_policy(Some("%7B%7D"), &want));
        assert!(!same_policy(None, &want));
    }
}
