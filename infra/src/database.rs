//! The source database: master password secret, RDS subnet group, parameter group, instance.

use aws_sdk_rds::client::Waiters;
use aws_sdk_rds::types::{ApplyMethod, Parameter};
use aws_sdk_secretsmanager::types::Tag as SecretTag;

use crate::aws::{STACK_TAG, tagged, waited};
use crate::error::{Error, Result, aws};
use crate::plan::Resource;
use crate::stack::{Found, Ids, Stack};

/// Whether an RDS or Secrets Manager error says the thing is not there.
fn missing(e: &Error) -> bool {
    e.is_not_found() || e.code() == Some("ResourceNotFoundException")
}

/// `Ok(None)` for "not found", the error otherwise.
fn absent<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Stack {
    /// Named resources (RDS, secrets, IAM) are ours only if they carry our tag.
    pub(crate) fn claim<'a>(
        &self,
        r: Resource,
        tags: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        if tagged(tags, &self.t.stack) {
            Ok(())
        } else {
            Err(Error::Conflict {
                resource: format!("{} {}", r.kind(), self.t.name(r)),
                message: format!(
                    "exists without the tag {STACK_TAG}={}: it is not this stack's; \
                     rename the stack or remove it by hand",
                    self.t.stack
                ),
            })
        }
    }

    fn rds_tags(&self, r: Resource) -> Vec<aws_sdk_rds::types::Tag> {
        [(STACK_TAG, self.t.stack.clone()), ("Name", self.t.name(r))]
            .into_iter()
            .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
            .collect()
    }

    async fn claim_rds(&self, r: Resource, arn: &str) -> Result<()> {
        let out = (self.c.rds.list_tags_for_resource().resource_name(arn))
            .send()
            .await
            .map_err(aws("rds:ListTagsForResource"))?;
        let tags = out.tag_list().iter();
        self.claim(
            r,
            tags.map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        )
    }

    pub(crate) async fn observe_secret(&self) -> Result<Option<Found>> {
        let r = Resource::DbSecret;
        let described = (self.c.secrets.describe_secret().secret_id(self.t.name(r)))
            .send()
            .await
            .map_err(aws("secretsmanager:DescribeSecret"));
        let Some(secret) = absent(described)? else {
            return Ok(None);
        };
        let tags = secret.tags().iter();
        self.claim(
            r,
            tags.map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        )?;
        let mut found = Found::new(secret.arn().unwrap_or_default());
        found.replace_unless(secret.deleted_date().is_none(), || {
            "is scheduled for deletion; restore it (`aws secretsmanager restore-secret`)".into()
        });
        Ok(Some(found))
    }

    pub(crate) async fn create_secret(&self) -> Result<String> {
        let r = Resource::DbSecret;
        let password = match &self.t.database.literal_password {
            Some(literal) => literal.clone(),
            // Punctuation is left out: RDS refuses some of it, and the hosts' shell needs none.
            None => (self.c.secrets.get_random_password())
                .password_length(32)
                .exclude_punctuation(true)
                .send()
                .await
                .map_err(aws("secretsmanager:GetRandomPassword"))?
                .random_password()
                .unwrap_or_default()
                .to_owned(),
        };
        let value = serde_json::json!({
            "username": self.t.database.master_username,
            "password": password,
        });
        let tag = |k: &str, v: String| SecretTag::builder().key(k).value(v).build();
        let out = (self.c.secrets.create_secret())
            .name(self.t.name(r))
            .description("wrt: RDS master user")
            .secret_string(value.to_string())
            .tags(tag(STACK_TAG, self.t.stack.clone()))
            .tags(tag("Name", self.t.name(r)))
            .send()
            .await
            .map_err(aws("secretsmanager:CreateSecret"))?;
        Ok(out.arn().unwrap_or_default().into())
    }

    /// The master password, read back from the secret; it is passed to RDS and nowhere else.
    async fn master_password(&self, secret: &str) -> Result<String> {
        let out = (self.c.secrets.get_secret_value().secret_id(secret))
            .send()
            .await
            .map_err(aws("secretsmanager:GetSecretValue"))?;
        let value: serde_json::Value =
            serde_json::from_str(out.secret_string().unwrap_or_default()).unwrap_or_default();
        value["password"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Conflict {
                resource: format!("secret {}", self.t.name(Resource::DbSecret)),
                message: "has no \"password\" field".into(),
            })
    }

    pub(crate) async fn delete_secret(&self, id: &str) -> Result<()> {
        // No recovery window: the database it unlocks goes in the same `down`, and a
        // secret pending deletion would block the next `up` from reusing the name.
        (self.c.secrets.delete_secret().secret_id(id))
            .force_delete_without_recovery(true)
            .send()
            .await
            .map_err(aws("secretsmanager:DeleteSecret"))?;
        Ok(())
    }

    fn db_subnet_ids<'a>(&self, ids: &'a Ids) -> Result<Vec<&'a str>> {
        let tier = self.t.database_tier();
        (0..self.t.subnets(tier).len())
            .map(|i| self.need(ids, Resource::Subnet(tier, i)))
            .collect()
    }

    pub(crate) async fn observe_db_subnet_group(&self, ids: &Ids) -> Result<Option<Found>> {
        let r = Resource::DbSubnetGroup;
        let described = (self.c.rds.describe_db_subnet_groups())
            .db_subnet_group_name(self.t.name(r))
            .send()
            .await
            .map_err(aws("rds:DescribeDBSubnetGroups"));
        let Some(out) = absent(described)? else {
            return Ok(None);
        };
        let Some(group) = out.db_subnet_groups().first() else {
            return Ok(None);
        };
        let arn = group.db_subnet_group_arn().unwrap_or_default();
        self.claim_rds(r, arn).await?;
        let mut found = Found::new(arn);
        let mut have: Vec<&str> = group
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_identifier())
            .collect();
        have.sort_unstable();
        let mut want = self.db_subnet_ids(ids).unwrap_or_default();
        want.sort_unstable();
        found.change_unless(have == want, || {
            format!(
                "subnets are {have:?}, want the {} subnets",
                self.t.database_tier()
            )
        });
        Ok(Some(found))
    }

    pub(crate) async fn create_db_subnet_group(&self, ids: &Ids) -> Result<String> {
        let r = Resource::DbSubnetGroup;
        let out = (self.c.rds.create_db_subnet_group())
            .db_subnet_group_name(self.t.name(r))
            .db_subnet_group_description("Subnet Group for Data Source")
            .set_subnet_ids(Some(
                self.db_subnet_ids(ids)?
                    .into_iter()
                    .map(Into::into)
                    .collect(),
            ))
            .set_tags(Some(self.rds_tags(r)))
            .send()
            .await
            .map_err(aws("rds:CreateDBSubnetGroup"))?;
        let group = out.db_subnet_group();
        Ok(group
            .and_then(|g| g.db_subnet_group_arn())
            .unwrap_or_default()
            .into())
    }

    pub(crate) async fn fix_db_subnet_group(&self, ids: &Ids) -> Result<()> {
        let pending = self.observe_db_subnet_group(ids).await?;
        if pending.is_some_and(|f| !f.change.is_empty()) {
            (self.c.rds.modify_db_subnet_group())
                .db_subnet_group_name(self.t.name(Resource::DbSubnetGroup))
                .set_subnet_ids(Some(
                    self.db_subnet_ids(ids)?
                        .into_iter()
                        .map(Into::into)
                        .collect(),
                ))
                .send()
                .await
                .map_err(aws("rds:ModifyDBSubnetGroup"))?;
        }
        Ok(())
    }

    pub(crate) async fn delete_db_subnet_group(&self) -> Result<()> {
        (self.c.rds.delete_db_subnet_group())
            .db_subnet_group_name(self.t.name(Resource::DbSubnetGroup))
            .send()
            .await
            .map_err(aws("rds:DeleteDBSubnetGroup"))?;
        Ok(())
    }

    /// The binlog parameters Debezium needs.
    fn binlog_parameters(&self) -> [(&'static str, &str); 2] {
        [
            ("binlog_format", &self.t.database.binlog_format),
            ("binlog_row_image", &self.t.database.binlog_row_image),
        ]
    }

    pub(crate) async fn observe_parameter_group(&self) -> Result<Option<Found>> {
        let r = Resource::DbParameterGroup;
        let name = self.t.name(r);
        let described = (self.c.rds.describe_db_parameter_groups())
            .db_parameter_group_name(&name)
            .send()
            .await
            .map_err(aws("rds:DescribeDBParameterGroups"));
        let Some(out) = absent(described)? else {
            return Ok(None);
        };
        let Some(group) = out.db_parameter_groups().first() else {
            return Ok(None);
        };
        let arn = group.db_parameter_group_arn().unwrap_or_default();
        self.claim_rds(r, arn).await?;
        let mut found = Found::new(arn);
        let family = group.db_parameter_group_family().unwrap_or_default();
        let want_family = &self.t.database.parameter_family;
        found.replace_unless(family == want_family, || {
            format!("family is {family}, want {want_family}")
        });
        let mut values = Vec::new();
        let mut pages = (self
            .c
            .rds
            .describe_db_parameters()
            .db_parameter_group_name(&name))
        .into_paginator()
        .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws("rds:DescribeDBParameters"))?;
            values.extend(page.parameters().iter().filter_map(|p| {
                Some((
                    p.parameter_name()?.to_owned(),
                    p.parameter_value()?.to_owned(),
                ))
            }));
        }
        for (key, want) in self.binlog_parameters() {
            let have = values
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str());
            found.change_unless(have == Some(want), || {
                format!(
                    "{key} is {}, want {want}",
                    have.unwrap_or("the engine default")
                )
            });
        }
        Ok(Some(found))
    }

    pub(crate) async fn create_parameter_group(&self) -> Result<String> {
        let r = Resource::DbParameterGroup;
        let out = (self.c.rds.create_db_parameter_group())
            .db_parameter_group_name(self.t.name(r))
            .db_parameter_group_family(&self.t.database.parameter_family)
            .description("wrt: row-based binlog for Debezium")
            .set_tags(Some(self.rds_tags(r)))
            .send()
            .await
            .map_err(aws("rds:CreateDBParameterGroup"))?;
        let group = out.db_parameter_group();
        Ok(group
            .and_then(|g| g.db_parameter_group_arn())
            .unwrap_or_default()
            .into())
    }

    pub(crate) async fn fix_parameter_group(&self) -> Result<()> {
        // Both parameters are dynamic: applied at once, no reboot.
        let parameters = self.binlog_parameters().map(|(k, v)| {
            Parameter::builder()
                .parameter_name(k)
                .parameter_value(v)
                .apply_method(ApplyMethod::Immediate)
                .build()
        });
        (self.c.rds.modify_db_parameter_group())
            .db_parameter_group_name(self.t.name(Resource::DbParameterGroup))
            .set_parameters(Some(parameters.to_vec()))
            .send()
            .await
            .map_err(aws("rds:ModifyDBParameterGroup"))?;
        Ok(())
    }

    pub(crate) async fn delete_parameter_group(&self) -> Result<()> {
        (self.c.rds.delete_db_parameter_group())
            .db_parameter_group_name(self.t.name(Resource::DbParameterGroup))
            .send()
            .await
            .map_err(aws("rds:DeleteDBParameterGroup"))?;
        Ok(())
    }

    /// The instance as RDS describes it, if it exists and is ours.
    pub(crate) async fn db_instance(&self) -> Result<Option<aws_sdk_rds::types::DbInstance>> {
        let r = Resource::DbInstance;
        let described = (self.c.rds.describe_db_instances())
            .db_instance_identifier(self.t.name(r))
            .send()
            .await
            .map_err(aws("rds:DescribeDBInstances"));
        let Some(db) = absent(described)?.and_then(|o| o.db_instances().first().cloned()) else {
            return Ok(None);
        };
        let tags = db.tag_list().iter();
        self.claim(
            r,
            tags.map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        )?;
        Ok(Some(db))
    }

    pub(crate) async fn observe_db_instance(&self, ids: &Ids) -> Result<Option<Found>> {
        let Some(db) = self.db_instance().await? else {
            return Ok(None);
        };
        let want = &self.t.database;
        let mut found = Found::new(db.db_instance_arn().unwrap_or_default());
        let status = db.db_instance_status().unwrap_or_default();
        found.replace_unless(status != "deleting", || "is being deleted".into());
        let fixed = [
            ("engine", db.engine(), Some("mysql")),
            (
                "zone",
                db.availability_zone(),
                Some(want.availability_zone.as_str()),
            ),
            (
                "master user",
                db.master_username(),
                Some(want.master_username.as_str()),
            ),
            ("database", db.db_name(), Some(want.database_name.as_str())),
        ];
        for (what, have, want) in fixed {
            found.replace_unless(have == want, || {
                format!("{what} is {have:?}, want {want:?}")
            });
        }
        let version = db.engine_version().unwrap_or_default();
        found.replace_unless(version.starts_with(&want.engine_version), || {
            format!("engine version is {version}, want {}", want.engine_version)
        });
        let class = db.db_instance_class().unwrap_or_default();
        found.change_unless(class == want.instance_class, || {
            format!("class is {class}, want {}", want.instance_class)
        });
        let public = db.publicly_accessible().unwrap_or_default();
        found.change_unless(public == want.publicly_accessible, || {
            format!(
                "publicly accessible is {public}, want {}",
                want.publicly_accessible
            )
        });
        let group = self.t.name(Resource::DbParameterGroup);
        let uses_group = db
            .db_parameter_groups()
            .iter()
            .any(|g| g.db_parameter_group_name() == Some(group.as_str()));
        found.change_unless(uses_group, || {
            format!("does not use parameter group {group}")
        });
        let sg = ids.get(&Resource::SecurityGroup).map(String::as_str);
        let in_sg = db
            .vpc_security_groups()
            .iter()
            .any(|g| g.vpc_security_group_id() == sg);
        found.change_unless(in_sg, || "is not in the stack's security group".into());
        Ok(Some(found))
    }

    pub(crate) async fn create_db_instance(&self, ids: &Ids) -> Result<String> {
        let r = Resource::DbInstance;
        let db = &self.t.database;
        let password = self
            .master_password(self.need(ids, Resource::DbSecret)?)
            .await?;
        let out = (self.c.rds.create_db_instance())
            .db_instance_identifier(self.t.name(r))
            .engine("mysql")
            .engine_version(&db.engine_version)
            .db_instance_class(&db.instance_class)
            .allocated_storage(db.allocated_storage_gib)
            .storage_encrypted(true)
            .availability_zone(&db.availability_zone)
            .multi_az(false)
            .master_username(&db.master_username)
            .master_user_password(password)
            .db_name(&db.database_name)
            .db_subnet_group_name(self.t.name(Resource::DbSubnetGroup))
            .db_parameter_group_name(self.t.name(Resource::DbParameterGroup))
            .vpc_security_group_ids(self.need(ids, Resource::SecurityGroup)?)
            .publicly_accessible(db.publicly_accessible)
            // RDS keeps binlogs only while automated backups are on.
            .backup_retention_period(1)
            .set_tags(Some(self.rds_tags(r)))
            .send()
            .await
            .map_err(aws("rds:CreateDBInstance"))?;
        self.wait_for_db("available").await?;
        Ok(out
            .db_instance()
            .and_then(|d| d.db_instance_arn())
            .unwrap_or_default()
            .into())
    }

    async fn wait_for_db(&self, state: &str) -> Result<()> {
        let (name, limit) = (self.t.name(Resource::DbInstance), self.waits.database);
        if state == "available" {
            (self.c.rds.wait_until_db_instance_available())
                .db_instance_identifier(&name)
                .wait(limit)
                .await
                .map_err(waited(&name, state, limit))?;
        } else {
            (self.c.rds.wait_until_db_instance_deleted())
                .db_instance_identifier(&name)
                .wait(limit)
                .await
                .map_err(waited(&name, state, limit))?;
        }
        Ok(())
    }

    pub(crate) async fn fix_db_instance(&self, ids: &Ids) -> Result<()> {
        let pending = self.observe_db_instance(ids).await?;
        if pending.is_none_or(|f| f.change.is_empty()) {
            return Ok(());
        }
        let db = &self.t.database;
        (self.c.rds.modify_db_instance())
            .db_instance_identifier(self.t.name(Resource::DbInstance))
            .db_instance_class(&db.instance_class)
            .publicly_accessible(db.publicly_accessible)
            .db_parameter_group_name(self.t.name(Resource::DbParameterGroup))
            .vpc_security_group_ids(self.need(ids, Resource::SecurityGroup)?)
            .apply_immediately(true)
            .send()
            .await
            .map_err(aws("rds:ModifyDBInstance"))?;
        self.wait_for_db("available").await
    }

    pub(crate) async fn delete_db_instance(&self) -> Result<()> {
        let name = self.t.name(Resource::DbInstance);
        let mut call = self
            .c
            .rds
            .delete_db_instance()
            .db_instance_identifier(&name);
        call = if self.t.database.final_snapshot {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            call.final_db_snapshot_identifier(format!("{name}-final-{stamp}"))
        } else {
            call.skip_final_snapshot(true)
        };
        call.send().await.map_err(aws("rds:DeleteDBInstance"))?;
        self.wait_for_db("deleted").await
    }

    /// The instance's endpoint address, for the hosts and the connector.
    pub(crate) async fn db_endpoint(&self) -> Result<String> {
        let db = self.db_instance().await?;
        db.as_ref()
            .and_then(|d| d.endpoint())
            .and_then(|e| e.address())
            .map(str::to_owned)
            .ok_or_else(|| Error::Conflict {
                resource: format!("db instance {}", self.t.name(Resource::DbInstance)),
                message: "has no endpoint yet; run `wrt infra up` again once it is available"
                    .into(),
            })
    }
}
