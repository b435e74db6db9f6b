//! Glue: the Data Catalog database the hosts describe the lake's Parquet tables in. `up`
//! makes the database only; the hosts make each table as its first file lands.

use aws_sdk_glue::types::DatabaseInput;

use crate::aws::STACK_TAG;
use crate::error::{Error, Result, aws};
use crate::plan::Resource;
use crate::stack::{Found, Stack};

impl Stack {
    fn glue_database(&self) -> String {
        self.t.name(Resource::GlueDatabase)
    }

    /// A database parameter marks it as this stack's: Glue tags need the account id in the
    /// ARN, which nothing else here needs. A database without the mark is used, not owned.
    pub(crate) async fn observe_glue_database(&self) -> Result<Option<Found>> {
        let name = self.glue_database();
        let database = match self.c.glue.get_database().name(&name).send().await {
            Ok(out) => out.database,
            Err(e) => match aws("glue:GetDatabase")(e) {
                e if e.is_not_found() => return Ok(None),
                e => return Err(e),
            },
        };
        let Some(database) = database else {
            return Ok(None);
        };
        let mut found = Found::new(&name);
        match database.parameters().and_then(|p| p.get(STACK_TAG)) {
            Some(stack) if *stack == self.t.stack => {}
            Some(other) => {
                return Err(Error::Conflict {
                    resource: format!("glue database {name}"),
                    message: format!(
                        "belongs to stack {other:?}; set storage.glue-database to another name"
                    ),
                });
            }
            None => found.owned = false,
        }
        Ok(Some(found))
    }

    pub(crate) async fn create_glue_database(&self) -> Result<String> {
        let name = self.glue_database();
        let input = DatabaseInput::builder()
            .name(&name)
            .description(format!(
                "wrt stack {}: Parquet tables of s3://{}/",
                self.t.stack,
                self.t.lake_bucket()
            ))
            .parameters(STACK_TAG, &self.t.stack)
            .build()
            .expect("the name is set");
        match (self.c.glue.create_database().database_input(input))
            .send()
            .await
            .map_err(aws("glue:CreateDatabase"))
        {
            Err(e) if !e.is_already_exists() => Err(e),
            _ => Ok(name),
        }
    }

    /// Deleting a database deletes its tables. They only describe the lake's files, but a
    /// person may have added views or grants: like a bucket, a database with tables is
    /// kept unless `down` may purge.
    pub(crate) async fn delete_glue_database(&self) -> Result<()> {
        let name = self.glue_database();
        if !self.purge_buckets {
            let tables = (self.c.glue.get_tables().database_name(&name))
                .send()
                .await
                .map_err(aws("glue:GetTables"))?;
            if !tables.table_list().is_empty() {
                return Err(Error::Conflict {
                    resource: format!("glue database {name}"),
                    message: format!(
                        "still holds tables ({}, …); rerun `wrt infra down --purge-buckets` \
                         to delete them with the lake",
                        tables.table_list()[0].name()
                    ),
                });
            }
        }
        match (self.c.glue.delete_database().name(&name))
            .send()
            .await
            .map_err(aws("glue:DeleteDatabase"))
        {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }
}
