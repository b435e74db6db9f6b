//! The AWS Glue Data Catalog through aws-sdk-glue: one external Parquet table per
//! destination, at `s3://<bucket>/<prefix><destination>/`, partitioned by the keys of its
//! Hive path, each partition registered as it appears (so Athena needs no crawler).
//! Credentials come from the default chain, as the sink's do.

use aws_sdk_glue::Client;
use aws_sdk_glue::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_glue::types::{
    BatchUpdatePartitionRequestEntry, Column as GlueColumn, DatabaseInput, PartitionInput,
    SerDeInfo, StorageDescriptor, TableInput,
};

use super::{Column, Described, Table};
use crate::config::{GlueCatalog, S3Sink};
use crate::pipeline::sink::SinkError;
use crate::pipeline::sink::s3::patience;

const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";

/// A Glue database, its tables at the sink's locations.
#[derive(Debug, Clone)]
pub struct Glue {
    client: Client,
    database: String,
    /// `s3://<bucket>/<prefix>`: where the destinations' keys start.
    base: String,
}

impl Glue {
    /// A client for `config`, its tables in `sink`; makes no request.
    pub async fn new(config: &GlueCatalog, sink: &S3Sink) -> Self {
        let region = config.region.clone().unwrap_or_else(|| sink.region.clone());
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region))
            .load()
            .await;
        let (timeouts, retries) = patience(sink);
        let mut builder = aws_sdk_glue::config::Builder::from(&shared)
            .timeout_config(timeouts)
            .retry_config(retries);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Glue {
            client: Client::from_conf(builder.build()),
            database: config.database.clone(),
            base: format!("s3://{}/{}", sink.bucket, sink.prefix),
        }
    }

    /// Creates the database if it is missing; fails early, with the reason, when Glue
    /// cannot be reached or refuses.
    pub async fn check(&self) -> Result<(), SinkError> {
        match self.client.get_database().name(&self.database).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_entity_not_found_exception()) =>
            {
                let input = DatabaseInput::builder()
                    .name(&self.database)
                    .description("Parquet tables written by wrt")
                    .build()
                    .expect("the database has a name");
                match self
                    .client
                    .create_database()
                    .database_input(input)
                    .send()
                    .await
                {
                    Ok(_) => {
                        tracing::info!(database = %self.database, "created the Glue database");
                        Ok(())
                    }
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_already_exists_exception()) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(self.error("creating the database", "", e)),
                }
            }
            Err(e) => Err(self.error("reading the database", "", e)),
        }
    }

    fn error<E>(&self, doing: &str, table: &str, e: SdkError<E>) -> SinkError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let location = format!("glue://{}/{table}", self.database);
        let answer = match (e.raw_response().map(|r| r.status().as_u16()), e.code()) {
            (Some(status), Some(code)) => {
                format!("HTTP {status} {code}: {}", e.message().unwrap_or_default())
            }
            (Some(status), None) => format!("HTTP {status}"),
            (None, _) => e.to_string(),
        };
        let message = format!("{doing}: {answer}");
        match e.code() {
            Some(
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException",
            ) => SinkError::Refused {
                location,
                message: format!(
                    "{message}; check the host's AWS credentials and that its role may \
                     glue:GetDatabase, CreateDatabase (unless the database exists), \
                     GetTable, CreateTable, UpdateTable, GetPartitions, \
                     BatchCreatePartition and BatchUpdatePartition on the database"
                ),
            },
            // Asking again would get the same answer: a person has to look.
            Some(
                "InvalidInputException"
                | "ValidationException"
                | "ResourceNumberLimitExceededException",
            ) => SinkError::Refused { location, message },
            _ => SinkError::Store { location, message },
        }
    }

    fn storage(&self, location: String, columns: &[Column]) -> StorageDescriptor {
        StorageDescriptor::builder()
            .set_columns(Some(glue_columns(columns)))
            .location(location)
            .input_format(INPUT_FORMAT)
            .output_format(OUTPUT_FORMAT)
            .serde_info(SerDeInfo::builder().serialization_library(SERDE).build())
            .build()
    }

    fn table_input(&self, name: &str, prefix: &str, table: &Table) -> TableInput {
        let keys: Vec<Column> = (table.partition_keys.iter())
            .map(|key| Column {
                name: key.clone(),
                hive_type: "string".into(),
            })
            .collect();
        let parameters = table.parameters.clone().into_iter().collect();
        TableInput::builder()
            .name(name)
            .table_type("EXTERNAL_TABLE")
            .set_parameters(Some(parameters))
            .parameters("classification", "parquet")
            .parameters("EXTERNAL", "TRUE")
            .set_partition_keys(Some(glue_columns(&keys)))
            .storage_descriptor(self.storage(format!("{}{prefix}", self.base), &table.columns))
            .build()
            .expect("the table has a name")
    }
}

fn glue_columns(columns: &[Column]) -> Vec<GlueColumn> {
    (columns.iter())
        .map(|c| {
            GlueColumn::builder()
                .name(&c.name)
                .r#type(&c.hive_type)
                .build()
                .expect("a column has a name")
        })
        .collect()
}

fn columns(glue: &[GlueColumn]) -> Vec<Column> {
    (glue.iter())
        .map(|c| Column {
            name: c.name().to_string(),
            hive_type: c.r#type().unwrap_or("string").to_string(),
        })
        .collect()
}

/// The operations [`super::Catalog`] needs. Creating what exists already is not an error:
/// another host made it first.
impl Glue {
    pub async fn get(&self, name: &str) -> Result<Option<Table>, SinkError> {
        let got = self
            .client
            .get_table()
            .database_name(&self.database)
            .name(name)
            .send()
            .await;
        let output = match got {
            Ok(output) => output,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_entity_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(self.error("reading the table", name, e)),
        };
        let Some(table) = output.table() else {
            return Ok(None);
        };
        Ok(Some(Table {
            columns: columns(
                table
                    .storage_descriptor()
                    .map(StorageDescriptor::columns)
                    .unwrap_or_default(),
            ),
            partition_keys: columns(table.partition_keys())
                .into_iter()
                .map(|c| c.name)
                .collect(),
            parameters: (table.parameters().into_iter().flatten())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }))
    }

    pub async fn create(&self, name: &str, described: &Described) -> Result<(), SinkError> {
        let table = Table {
            columns: described.columns.clone(),
            partition_keys: described.partition.iter().map(|(k, _)| k.clone()).collect(),
            parameters: Default::default(),
        };
        let input = self.table_input(name, &described.prefix, &table);
        match (self.client.create_table())
            .database_name(&self.database)
            .table_input(input)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(database = %self.database, table = %name, "created the catalog table");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error("creating the table", name, e)),
        }
    }

    pub async fn update(&self, name: &str, prefix: &str, table: &Table) -> Result<(), SinkError> {
        (self.client.update_table())
            .database_name(&self.database)
            .table_input(self.table_input(name, prefix, table))
            .send()
            .await
            .map_err(|e| self.error("updating the table", name, e))?;
        Ok(())
    }

    /// Gives every partition of the table whose column list differs the table's columns.
    pub async fn update_partitions(&self, name: &str, table: &Table) -> Result<(), SinkError> {
        let wanted = glue_columns(&table.columns);
        let mut stale = Vec::new();
        let mut pages = (self.client.get_partitions())
            .database_name(&self.database)
            .table_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("listing partitions", name, e))?;
            for partition in page.partitions() {
                let Some(descriptor) = partition.storage_descriptor() else {
                    continue;
                };
                if descriptor.columns() != wanted.as_slice() {
                    let location = descriptor.location().unwrap_or_default().to_string();
                    let input = PartitionInput::builder()
                        .set_values(Some(partition.values().to_vec()))
                        .storage_descriptor(self.storage(location, &table.columns))
                        .build();
                    let entry = BatchUpdatePartitionRequestEntry::builder()
                        .set_partition_value_list(Some(partition.values().to_vec()))
                        .partition_input(input)
                        .build()
                        .expect("the entry has its values");
                    stale.push(entry);
                }
            }
        }
        // BatchUpdatePartition takes at most 100 entries.
        for entries in stale.chunks(100) {
            let output = (self.client.batch_update_partition())
                .database_name(&self.database)
                .table_name(name)
                .set_entries(Some(entries.to_vec()))
                .send()
                .await
                .map_err(|e| self.error("updating partitions", name, e))?;
            if let Some(failed) = output.errors().first() {
                let detail = failed.error_detail();
                return Err(SinkError::Store {
                    location: format!("glue://{}/{name}", self.database),
                    message: format!(
                        "updating partition {:?}: {} {}",
                        failed.partition_value_list(),
                        detail.and_then(|d| d.error_code()).unwrap_or_default(),
                        detail.and_then(|d| d.error_message()).unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }

    pub async fn add_partition(
        &self,
        name: &str,
        described: &Described,
        table: &Table,
    ) -> Result<(), SinkError> {
        let values = described.partition.iter().map(|(_, v)| v.clone());
        let location = format!("{}{}", self.base, described.partition_prefix);
        let input = PartitionInput::builder()
            .set_values(Some(values.collect()))
            .storage_descriptor(self.storage(location, &table.columns))
            .build();
        let output = (self.client.batch_create_partition())
            .database_name(&self.database)
            .table_name(name)
            .partition_input_list(input)
            .send()
            .await
            .map_err(|e| self.error("registering a partition", name, e))?;
        let failed = (output.errors().iter())
            .filter_map(|e| e.error_detail())
            .find(|detail| detail.error_code() != Some("AlreadyExistsException"));
        match failed {
            None => Ok(()),
            Some(detail) => Err(SinkError::Store {
                location: format!("glue://{}/{name}", self.database),
                message: format!(
                    "registering partition {}: {} {}",
                    described.partition_prefix,
                    detail.error_code().unwrap_or_default(),
                    detail.error_message().unwrap_or_default()
                ),
            }),
        }
    }
}
