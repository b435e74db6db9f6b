//! EC2 networking: VPC, subnets, internet and NAT gateways, route tables, security group.

use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{
    ConnectivityType, DomainType, Filter, IpPermission, IpRange, ResourceType, Tag,
    TagSpecification, UserIdGroupPair,
};

use crate::aws::{STACK_TAG, tagged, waited};
use crate::error::{Error, Result, aws};
use crate::plan::{Resource, Tier};
use crate::stack::{Found, Ids, Stack};

const ANYWHERE: &str = "0.0.0.0/0";
/// `IpProtocol` for all traffic.
const ALL: &str = "-1";

impl Stack {
    /// Server-side filters for this stack's resource `r` (our tags are checked again on
    /// the answer: some describe calls ignore filters they do not support).
    pub(crate) fn ec2_filters(&self, r: Resource) -> Vec<Filter> {
        vec![
            Filter::builder()
                .name(format!("tag:{STACK_TAG}"))
                .values(&self.t.stack)
                .build(),
            Filter::builder()
                .name("tag:Name")
                .values(self.t.name(r))
                .build(),
        ]
    }

    /// The stack and name tags, applied atomically at creation.
    pub(crate) fn ec2_tags(&self, r: Resource, kind: ResourceType) -> TagSpecification {
        let tag = |k: &str, v: String| Tag::builder().key(k).value(v).build();
        TagSpecification::builder()
            .resource_type(kind)
            .tags(tag(STACK_TAG, self.t.stack.clone()))
            .tags(tag("Name", self.t.name(r)))
            .build()
    }

    /// Keeps the items tagged as this stack's `r`; more than one is a conflict.
    pub(crate) fn only_ours<'a, T>(
        &self,
        r: Resource,
        items: &'a [T],
        tags: impl Fn(&T) -> &[Tag],
    ) -> Result<Option<&'a T>> {
        let name = self.t.name(r);
        let pairs = |t: &'a [Tag]| {
            t.iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        };
        let ours: Vec<&T> = items
            .iter()
            .filter(|i| {
                tagged(pairs(tags(i)), &self.t.stack)
                    && pairs(tags(i)).any(|p| p == ("Name", name.as_str()))
            })
            .collect();
        match ours.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(Error::Conflict {
                resource: format!("{} {name}", r.kind()),
                message: format!(
                    "{} resources carry this stack's tags; delete the extra ones by hand",
                    many.len()
                ),
            }),
        }
    }

    pub(crate) async fn observe_vpc(&self) -> Result<Option<Found>> {
        let out = (self.c.ec2.describe_vpcs())
            .set_filters(Some(self.ec2_filters(Resource::Vpc)))
            .send()
            .await
            .map_err(aws("ec2:DescribeVpcs"))?;
        let Some(vpc) = self.only_ours(Resource::Vpc, out.vpcs(), |v| v.tags())? else {
            return Ok(None);
        };
        let mut found = Found::new(vpc.vpc_id().unwrap_or_default());
        let want = self.t.network.vpc_cidr.to_string();
        let have = vpc.cidr_block().unwrap_or_default();
        found.replace_unless(have == want, || format!("CIDR is {have}, want {want}"));
        Ok(Some(found))
    }

    pub(crate) async fn create_vpc(&self) -> Result<String> {
        let out = (self.c.ec2.create_vpc())
            .cidr_block(self.t.network.vpc_cidr.to_string())
            .tag_specifications(self.ec2_tags(Resource::Vpc, ResourceType::Vpc))
            .send()
            .await
            .map_err(aws("ec2:CreateVpc"))?;
        Ok(out
            .vpc()
            .and_then(|v| v.vpc_id())
            .unwrap_or_default()
            .into())
    }

    pub(crate) async fn delete_vpc(&self, id: &str) -> Result<()> {
        (self.c.ec2.delete_vpc().vpc_id(id).send().await).map_err(aws("ec2:DeleteVpc"))?;
        Ok(())
    }

    pub(crate) async fn observe_subnet(
        &self,
        tier: Tier,
        i: usize,
        ids: &Ids,
    ) -> Result<Option<Found>> {
        let r = Resource::Subnet(tier, i);
        let out = (self.c.ec2.describe_subnets())
            .set_filters(Some(self.ec2_filters(r)))
            .send()
            .await
            .map_err(aws("ec2:DescribeSubnets"))?;
        let Some(subnet) = self.only_ours(r, out.subnets(), |s| s.tags())? else {
            return Ok(None);
        };
        let want = &self.t.subnets(tier)[i];
        let mut found = Found::new(subnet.subnet_id().unwrap_or_default());
        let cidr = subnet.cidr_block().unwrap_or_default();
        found.replace_unless(cidr == want.cidr.to_string(), || {
            format!("CIDR is {cidr}, want {}", want.cidr)
        });
        let az = subnet.availability_zone().unwrap_or_default();
        found.replace_unless(az == want.az, || format!("zone is {az}, want {}", want.az));
        let vpc = ids.get(&Resource::Vpc).map(String::as_str);
        found.replace_unless(subnet.vpc_id() == vpc, || "is in another VPC".into());
        Ok(Some(found))
    }

    pub(crate) async fn create_subnet(&self, tier: Tier, i: usize, ids: &Ids) -> Result<String> {
        let want = &self.t.subnets(tier)[i];
        let out = (self.c.ec2.create_subnet())
            .vpc_id(self.need(ids, Resource::Vpc)?)
            .cidr_block(want.cidr.to_string())
            .availability_zone(&want.az)
            .tag_specifications(self.ec2_tags(Resource::Subnet(tier, i), ResourceType::Subnet))
            .send()
            .await
            .map_err(aws("ec2:CreateSubnet"))?;
        Ok(out
            .subnet()
            .and_then(|s| s.subnet_id())
            .unwrap_or_default()
            .into())
    }

    pub(crate) async fn delete_subnet(&self, id: &str) -> Result<()> {
        (self.c.ec2.delete_subnet().subnet_id(id).send().await).map_err(aws("ec2:DeleteSubnet"))?;
        Ok(())
    }

    pub(crate) async fn observe_internet_gateway(&self, ids: &Ids) -> Result<Option<Found>> {
        let r = Resource::InternetGateway;
        let out = (self.c.ec2.describe_internet_gateways())
            .set_filters(Some(self.ec2_filters(r)))
            .send()
            .await
            .map_err(aws("ec2:DescribeInternetGateways"))?;
        let Some(igw) = self.only_ours(r, out.internet_gateways(), |g| g.tags())? else {
            return Ok(None);
        };
        let mut found = Found::new(igw.internet_gateway_id().unwrap_or_default());
        let vpc = ids.get(&Resource::Vpc).map(String::as_str);
        let attached = igw.attachments().iter().any(|a| a.vpc_id() == vpc);
        found.change_unless(attached, || "not attached to the VPC".into());
        Ok(Some(found))
    }

    pub(crate) async fn create_internet_gateway(&self) -> Result<String> {
        let out = (self.c.ec2.create_internet_gateway())
            .tag_specifications(
                self.ec2_tags(Resource::InternetGateway, ResourceType::InternetGateway),
            )
            .send()
            .await
            .map_err(aws("ec2:CreateInternetGateway"))?;
        let igw = out.internet_gateway();
        Ok(igw
            .and_then(|g| g.internet_gateway_id())
            .unwrap_or_default()
            .into())
    }

    pub(crate) async fn attach_internet_gateway(&self, id: &str, ids: &Ids) -> Result<()> {
        let vpc = self.need(ids, Resource::Vpc)?;
        let attached = (self.c.ec2.describe_internet_gateways())
            .internet_gateway_ids(id)
            .send()
            .await
            .map_err(aws("ec2:DescribeInternetGateways"))?
            .internet_gateways()
            .iter()
            .flat_map(|g| g.attachments())
            .any(|a| a.vpc_id() == Some(vpc));
        if !attached {
            (self.c.ec2.attach_internet_gateway())
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(aws("ec2:AttachInternetGateway"))?;
        }
        Ok(())
    }

    pub(crate) async fn delete_internet_gateway(&self, id: &str) -> Result<()> {
        let out = (self.c.ec2.describe_internet_gateways())
            .internet_gateway_ids(id)
            .send()
            .await
            .map_err(aws("ec2:DescribeInternetGateways"))?;
        for vpc in out
            .internet_gateways()
            .iter()
            .flat_map(|g| g.attachments())
            .filter_map(|a| a.vpc_id())
        {
            (self.c.ec2.detach_internet_gateway())
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(aws("ec2:DetachInternetGateway"))?;
        }
        (self.c.ec2.delete_internet_gateway())
            .internet_gateway_id(id)
            .send()
            .await
            .map_err(aws("ec2:DeleteInternetGateway"))?;
        Ok(())
    }

    pub(crate) async fn observe_elastic_ip(&self) -> Result<Option<Found>> {
        let r = Resource::ElasticIp;
        let out = (self.c.ec2.describe_addresses())
            .set_filters(Some(self.ec2_filters(r)))
            .send()
            .await
            .map_err(aws("ec2:DescribeAddresses"))?;
        let eip = self.only_ours(r, out.addresses(), |a| a.tags())?;
        Ok(eip.map(|a| Found::new(a.allocation_id().unwrap_or_default())))
    }

    pub(crate) async fn create_elastic_ip(&self) -> Result<String> {
        let out = (self.c.ec2.allocate_address())
            .domain(DomainType::Vpc)
            .tag_specifications(self.ec2_tags(Resource::ElasticIp, ResourceType::ElasticIp))
            .send()
            .await
            .map_err(aws("ec2:AllocateAddress"))?;
        Ok(out.allocation_id().unwrap_or_default().into())
    }

    pub(crate) async fn delete_elastic_ip(&self, id: &str) -> Result<()> {
        (self.c.ec2.release_address().allocation_id(id).send().await)
            .map_err(aws("ec2:ReleaseAddress"))?;
        Ok(())
    }

    pub(crate) async fn observe_nat_gateway(&self, ids: &Ids) -> Result<Option<Found>> {
        let r = Resource::NatGateway;
        let live = Filter::builder()
            .name("state")
            .values("pending")
            .values("available")
            .build();
        let out = (self.c.ec2.describe_nat_gateways())
            .set_filter(Some(self.ec2_filters(r)))
            .filter(live)
            .send()
            .await
            .map_err(aws("ec2:DescribeNatGateways"))?;
        let Some(nat) = self.only_ours(r, out.nat_gateways(), |n| n.tags())? else {
            return Ok(None);
        };
        let mut found = Found::new(nat.nat_gateway_id().unwrap_or_default());
        let subnet = ids
            .get(&Resource::Subnet(Tier::Public, 0))
            .map(String::as_str);
        found.replace_unless(nat.subnet_id() == subnet, || {
            "is not in the first public subnet".into()
        });
        let eip = ids.get(&Resource::ElasticIp).map(String::as_str);
        let uses_eip = nat
            .nat_gateway_addresses()
            .iter()
            .any(|a| a.allocation_id() == eip);
        found.replace_unless(uses_eip, || "does not use the stack's elastic IP".into());
        Ok(Some(found))
    }

    pub(crate) async fn create_nat_gateway(&self, ids: &Ids) -> Result<String> {
        let r = Resource::NatGateway;
        let out = (self.c.ec2.create_nat_gateway())
            .subnet_id(self.need(ids, Resource::Subnet(Tier::Public, 0))?)
            .allocation_id(self.need(ids, Resource::ElasticIp)?)
            .connectivity_type(ConnectivityType::Public)
            .tag_specifications(self.ec2_tags(r, ResourceType::Natgateway))
            .send()
            .await
            .map_err(aws("ec2:CreateNatGateway"))?;
        let id = out
            .nat_gateway()
            .and_then(|n| n.nat_gateway_id())
            .unwrap_or_default();
        let limit = self.waits.network;
        (self.c.ec2.wait_until_nat_gateway_available())
            .nat_gateway_ids(id)
            .wait(limit)
            .await
            .map_err(waited(&self.t.name(r), "available", limit))?;
        Ok(id.into())
    }

    pub(crate) async fn delete_nat_gateway(&self, id: &str) -> Result<()> {
        (self
            .c
            .ec2
            .delete_nat_gateway()
            .nat_gateway_id(id)
            .send()
            .await)
            .map_err(aws("ec2:DeleteNatGateway"))?;
        // The elastic IP and the subnet stay busy until the gateway is gone.
        let limit = self.waits.network;
        (self.c.ec2.wait_until_nat_gateway_deleted())
            .nat_gateway_ids(id)
            .wait(limit)
            .await
            .map_err(waited(&self.t.name(Resource::NatGateway), "deleted", limit))?;
        Ok(())
    }

    /// The default route's target: the internet gateway for public, the NAT gateway for private.
    fn default_target(tier: Tier) -> Resource {
        match tier {
            Tier::Public => Resource::InternetGateway,
            Tier::Private => Resource::NatGateway,
        }
    }

    fn tier_subnets(&self, tier: Tier, ids: &Ids) -> Vec<Option<String>> {
        (0..self.t.subnets(tier).len())
            .map(|i| ids.get(&Resource::Subnet(tier, i)).cloned())
            .collect()
    }

    pub(crate) async fn observe_route_table(&self, tier: Tier, ids: &Ids) -> Result<Option<Found>> {
        let r = Resource::RouteTable(tier);
        let out = (self.c.ec2.describe_route_tables())
            .set_filters(Some(self.ec2_filters(r)))
            .send()
            .await
            .map_err(aws("ec2:DescribeRouteTables"))?;
        let Some(table) = self.only_ours(r, out.route_tables(), |t| t.tags())? else {
            return Ok(None);
        };
        let mut found = Found::new(table.route_table_id().unwrap_or_default());
        let target = ids.get(&Self::default_target(tier)).map(String::as_str);
        let default = table
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some(ANYWHERE));
        let routed = default.is_some_and(|d| match tier {
            Tier::Public => d.gateway_id() == target,
            Tier::Private => d.nat_gateway_id() == target,
        });
        found.change_unless(routed, || {
            format!(
                "{ANYWHERE} does not go to the {}",
                Self::default_target(tier).kind()
            )
        });
        for (i, subnet) in self.tier_subnets(tier, ids).iter().enumerate() {
            let associated = table
                .associations()
                .iter()
                .any(|a| subnet.is_some() && a.subnet_id() == subnet.as_deref());
            found.change_unless(associated, || {
                format!(
                    "{} is not associated",
                    self.t.name(Resource::Subnet(tier, i))
                )
            });
        }
        Ok(Some(found))
    }

    pub(crate) async fn create_route_table(&self, tier: Tier, ids: &Ids) -> Result<String> {
        let r = Resource::RouteTable(tier);
        let out = (self.c.ec2.create_route_table())
            .vpc_id(self.need(ids, Resource::Vpc)?)
            .tag_specifications(self.ec2_tags(r, ResourceType::RouteTable))
            .send()
            .await
            .map_err(aws("ec2:CreateRouteTable"))?;
        Ok(out
            .route_table()
            .and_then(|t| t.route_table_id())
            .unwrap_or_default()
            .into())
    }

    pub(crate) async fn fix_route_table(&self, tier: Tier, id: &str, ids: &Ids) -> Result<()> {
        let target = self.need(ids, Self::default_target(tier))?;
        let out = (self.c.ec2.describe_route_tables())
            .route_table_ids(id)
            .send()
            .await
            .map_err(aws("ec2:DescribeRouteTables"))?;
        let table = out.route_tables().first();
        let default = table
            .into_iter()
            .flat_map(|t| t.routes())
            .find(|r| r.destination_cidr_block() == Some(ANYWHERE));
        let right = default
            .is_some_and(|d| d.gateway_id() == Some(target) || d.nat_gateway_id() == Some(target));
        if !right {
            // A wrong default route is removed first, so one path creates the right one.
            if default.is_some() {
                (self.c.ec2.delete_route())
                    .route_table_id(id)
                    .destination_cidr_block(ANYWHERE)
                    .send()
                    .await
                    .map_err(aws("ec2:DeleteRoute"))?;
            }
            let call = (self.c.ec2.create_route())
                .route_table_id(id)
                .destination_cidr_block(ANYWHERE);
            match tier {
                Tier::Public => call.gateway_id(target),
                Tier::Private => call.nat_gateway_id(target),
            }
            .send()
            .await
            .map_err(aws("ec2:CreateRoute"))?;
        }
        let associated: Vec<&str> = table
            .into_iter()
            .flat_map(|t| t.associations())
            .filter_map(|a| a.subnet_id())
            .collect();
        for i in 0..self.t.subnets(tier).len() {
            let subnet = self.need(ids, Resource::Subnet(tier, i))?;
            if !associated.contains(&subnet) {
                (self.c.ec2.associate_route_table())
                    .route_table_id(id)
                    .subnet_id(subnet)
                    .send()
                    .await
                    .map_err(aws("ec2:AssociateRouteTable"))?;
            }
        }
        Ok(())
    }

    pub(crate) async fn delete_route_table(&self, id: &str) -> Result<()> {
        let out = (self.c.ec2.describe_route_tables())
            .route_table_ids(id)
            .send()
            .await
            .map_err(aws("ec2:DescribeRouteTables"))?;
        for association in out.route_tables().iter().flat_map(|t| t.associations()) {
            if let Some(association) = association.route_table_association_id() {
                (self.c.ec2.disassociate_route_table())
                    .association_id(association)
                    .send()
                    .await
                    .map_err(aws("ec2:DisassociateRouteTable"))?;
            }
        }
        (self
            .c
            .ec2
            .delete_route_table()
            .route_table_id(id)
            .send()
            .await)
            .map_err(aws("ec2:DeleteRouteTable"))?;
        Ok(())
    }

    /// The two rules of the recipe: all traffic from the VPC, and from the group itself (MSK).
    fn security_group_rules(&self, id: &str) -> [(IpPermission, &'static str); 2] {
        let cidr = self.t.network.vpc_cidr.to_string();
        [
            (
                IpPermission::builder()
                    .ip_protocol(ALL)
                    .ip_ranges(
                        IpRange::builder()
                            .cidr_ip(cidr)
                            .description("VPC CIDR BLOCK")
                            .build(),
                    )
                    .build(),
                "all traffic from the VPC",
            ),
            (
                IpPermission::builder()
                    .ip_protocol(ALL)
                    .user_id_group_pairs(
                        UserIdGroupPair::builder()
                            .group_id(id)
                            .description("refer to self for msk")
                            .build(),
                    )
                    .build(),
                "all traffic from itself",
            ),
        ]
    }

    /// Whether `have` already grants what `want` asks for.
    fn grants(have: &[IpPermission], want: &IpPermission) -> bool {
        have.iter().any(|p| {
            p.ip_protocol() == want.ip_protocol()
                && want
                    .ip_ranges()
                    .iter()
                    .all(|w| p.ip_ranges().iter().any(|h| h.cidr_ip() == w.cidr_ip()))
                && want.user_id_group_pairs().iter().all(|w| {
                    p.user_id_group_pairs()
                        .iter()
                        .any(|h| h.group_id() == w.group_id())
                })
        })
    }

    pub(crate) async fn observe_security_group(&self, ids: &Ids) -> Result<Option<Found>> {
        let r = Resource::SecurityGroup;
        let out = (self.c.ec2.describe_security_groups())
            .set_filters(Some(self.ec2_filters(r)))
            .send()
            .await
            .map_err(aws("ec2:DescribeSecurityGroups"))?;
        let Some(group) = self.only_ours(r, out.security_groups(), |g| g.tags())? else {
            return Ok(None);
        };
        let id = group.group_id().unwrap_or_default();
        let mut found = Found::new(id);
        let vpc = ids.get(&Resource::Vpc).map(String::as_str);
        found.replace_unless(group.vpc_id() == vpc, || "is in another VPC".into());
        for (rule, what) in self.security_group_rules(id) {
            let granted = Self::grants(group.ip_permissions(), &rule);
            found.change_unless(granted, || format!("missing inbound rule: {what}"));
        }
        Ok(Some(found))
    }

    pub(crate) async fn create_security_group(&self, ids: &Ids) -> Result<String> {
        let r = Resource::SecurityGroup;
        let out = (self.c.ec2.create_security_group())
            .group_name(self.t.name(r))
            .description("wrt: all traffic inside the VPC")
            .vpc_id(self.need(ids, Resource::Vpc)?)
            .tag_specifications(self.ec2_tags(r, ResourceType::SecurityGroup))
            .send()
            .await
            .map_err(aws("ec2:CreateSecurityGroup"))?;
        Ok(out.group_id().unwrap_or_default().into())
    }

    pub(crate) async fn fix_security_group(&self, id: &str) -> Result<()> {
        let have = (self.c.ec2.describe_security_groups())
            .group_ids(id)
            .send()
            .await
            .map_err(aws("ec2:DescribeSecurityGroups"))?;
        let have = have
            .security_groups()
            .first()
            .map(|g| g.ip_permissions())
            .unwrap_or_default();
        for (rule, _) in self.security_group_rules(id) {
            if Self::grants(have, &rule) {
                continue;
            }
            let result = (self.c.ec2.authorize_security_group_ingress())
                .group_id(id)
                .ip_permissions(rule)
                .send()
                .await
                .map_err(aws("ec2:AuthorizeSecurityGroupIngress"));
            match result {
                Err(e) if !e.is_already_exists() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) async fn delete_security_group(&self, id: &str) -> Result<()> {
        (self.c.ec2.delete_security_group().group_id(id).send().await)
            .map_err(aws("ec2:DeleteSecurityGroup"))?;
        Ok(())
    }
}
