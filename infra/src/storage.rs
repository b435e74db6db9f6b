//! S3: the lake and registry buckets, public access blocked and encrypted.

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};

use crate::aws::{STACK_TAG, tagged};
use crate::error::{Error, Result, aws};
use crate::plan::{Bucket, Resource};
use crate::stack::{Found, Stack};

impl Stack {
    fn bucket_name(&self, b: Bucket) -> String {
        self.t.name(Resource::Bucket(b))
    }

    pub(crate) async fn observe_bucket(&self, b: Bucket) -> Result<Option<Found>> {
        let name = self.bucket_name(b);
        match self.c.s3.head_bucket().bucket(&name).send().await {
            Ok(_) => {}
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None);
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
                return Err(Error::Conflict {
                    resource: format!("s3 bucket {name}"),
                    message: "belongs to another account (bucket names are global); \
                              set storage.lake-bucket / storage.registry-bucket"
                        .into(),
                });
            }
            Err(e) => return Err(aws("s3:HeadBucket")(e)),
        }
        let mut found = Found::new(&name);
        let tags = match self.c.s3.get_bucket_tagging().bucket(&name).send().await {
            Ok(out) => out.tag_set().to_vec(),
            Err(e)
                if e.as_service_error().and_then(|s| s.meta().code()) == Some("NoSuchTagSet") =>
            {
                Vec::new()
            }
            Err(e) => return Err(aws("s3:GetBucketTagging")(e)),
        };
        if let Some(other) = tags
            .iter()
            .find(|t| t.key() == STACK_TAG && t.value() != self.t.stack)
        {
            return Err(Error::Conflict {
                resource: format!("s3 bucket {name}"),
                message: format!("belongs to stack {:?}", other.value()),
            });
        }
        // An untagged bucket of this name is what an interrupted `up` leaves: adopt it, but
        // `down` leaves it alone until it carries our tag.
        found.owned = tagged(tags.iter().map(|t| (t.key(), t.value())), &self.t.stack);
        found.change_unless(found.owned, || "is not tagged as this stack's".into());

        let blocked = match self
            .c
            .s3
            .get_public_access_block()
            .bucket(&name)
            .send()
            .await
        {
            Ok(out) => out.public_access_block_configuration().is_some_and(|c| {
                [
                    c.block_public_acls(),
                    c.ignore_public_acls(),
                    c.block_public_policy(),
                    c.restrict_public_buckets(),
                ]
                .iter()
                .all(|v| *v == Some(true))
            }),
            Err(e) if e.as_service_error().is_some() => false,
            Err(e) => return Err(aws("s3:GetPublicAccessBlock")(e)),
        };
        found.change_unless(blocked, || "public access is not blocked".into());
        let encrypted = match self.c.s3.get_bucket_encryption().bucket(&name).send().await {
            Ok(out) => out
                .server_side_encryption_configuration()
                .is_some_and(|c| !c.rules().is_empty()),
            Err(e) if e.as_service_error().is_some() => false,
            Err(e) => return Err(aws("s3:GetBucketEncryption")(e)),
        };
        found.change_unless(encrypted, || "default encryption is off".into());
        Ok(Some(found))
    }

    pub(crate) async fn create_bucket(&self, b: Bucket) -> Result<String> {
        let name = self.bucket_name(b);
        let mut call = self.c.s3.create_bucket().bucket(&name);
        // us-east-1 is the one region that rejects its own name as a location constraint.
        if self.t.region != "us-east-1" {
            call = call.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.t.region.as_str()))
                    .build(),
            );
        }
        match call.send().await.map_err(aws("s3:CreateBucket")) {
            Err(e) if !e.is_already_exists() => return Err(e),
            _ => {}
        }
        Ok(name)
    }

    pub(crate) async fn fix_bucket(&self, b: Bucket) -> Result<()> {
        let name = self.bucket_name(b);
        let tag = |k: &str, v: String| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .expect("key and value are set")
        };
        let tagging = Tagging::builder()
            .tag_set(tag(STACK_TAG, self.t.stack.clone()))
            .tag_set(tag("Name", name.clone()))
            .build()
            .expect("the tag set is set");
        (self
            .c
            .s3
            .put_bucket_tagging()
            .bucket(&name)
            .tagging(tagging))
        .send()
        .await
        .map_err(aws("s3:PutBucketTagging"))?;
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        (self.c.s3.put_public_access_block().bucket(&name))
            .public_access_block_configuration(block)
            .send()
            .await
            .map_err(aws("s3:PutPublicAccessBlock"))?;
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::Aes256)
            .build()
            .expect("the algorithm is set");
        let encryption = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(by_default)
                    .build(),
            )
            .build()
            .expect("the rules are set");
        (self.c.s3.put_bucket_encryption().bucket(&name))
            .server_side_encryption_configuration(encryption)
            .send()
            .await
            .map_err(aws("s3:PutBucketEncryption"))?;
        Ok(())
    }

    pub(crate) async fn delete_bucket(&self, b: Bucket) -> Result<()> {
        let name = self.bucket_name(b);
        if self.purge_buckets {
            self.empty_bucket(&name).await?;
        }
        match self.c.s3.delete_bucket().bucket(&name).send().await {
            Ok(_) => Ok(()),
            Err(e) => match aws("s3:DeleteBucket")(e) {
                e if e.code() == Some("BucketNotEmpty") => Err(Error::Conflict {
                    resource: format!("s3 bucket {name}"),
                    message: "still holds objects; move what you need and rerun \
                              `wrt infra down --purge-buckets`"
                        .into(),
                }),
                e => Err(e),
            },
        }
    }

    async fn empty_bucket(&self, name: &str) -> Result<()> {
        let mut pages = (self.c.s3.list_objects_v2().bucket(name))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws("s3:ListObjectsV2"))?;
            let keys: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(k)
                        .build()
                        .expect("the key is set")
                })
                .collect();
            if keys.is_empty() {
                continue;
            }
            let delete = Delete::builder()
                .set_objects(Some(keys))
                .quiet(true)
                .build()
                .expect("the objects are set");
            (self.c.s3.delete_objects().bucket(name).delete(delete))
                .send()
                .await
                .map_err(aws("s3:DeleteObjects"))?;
        }
        Ok(())
    }
}
