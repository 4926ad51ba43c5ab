"""Minimal reproductions of where moto differs from AWS in ways that touch ec2_provision.

Each test asserts moto's current behaviour, so the day a moto upgrade fixes one, its test
fails and says which workaround (docs/provisioning.md, "What moto does differently") can go.
"""

from __future__ import annotations

import pytest

REGION = "ap-northeast-2"


@pytest.fixture
def ec2(moto_server):
    return moto_server.client("ec2", region=REGION)


def tags_of(ec2, resource_id, resource_type=None):
    filters = [{"Name": "resource-id", "Values": [resource_id]}]
    if resource_type:
        filters.append({"Name": "resource-type", "Values": [resource_type]})
    return {t["Key"]: (t["Value"], t["ResourceType"]) for t in ec2.describe_tags(Filters=filters)["Tags"]}


def test_elastic_ip_tags_are_filed_under_vpc_elastic_ip(ec2):
    """AWS files an Elastic IP's tags under resource type ``elastic-ip``; moto under
    ``vpc-elastic-ip``. amazon.aws.ec2_eip compares tags through DescribeTags filtered by
    ``resource-type=elastic-ip`` (module_utils.ec2.ensure_ec2_tags), finds none on moto, adds
    them again and reports changed=true on every run with ``tags``. ec2_provision therefore
    calls ec2_eip only for app hosts without an address of the stack."""
    allocation = ec2.allocate_address(
        Domain="vpc",
        TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "Project", "Value": "repro"}]}],
    )["AllocationId"]
    try:
        assert tags_of(ec2, allocation) == {"Project": ("repro", "vpc-elastic-ip")}, "moto fixed the resource type"
        assert tags_of(ec2, allocation, "elastic-ip") == {}, "moto fixed the resource-type filter"
    finally:
        ec2.release_address(AllocationId=allocation)


def test_terminating_an_instance_keeps_its_elastic_ip_associated(ec2):
    """AWS disassociates an instance's Elastic IP when the instance terminates; moto keeps the
    association. ec2_provision treats an address whose instance is not a live host of the
    stack as free (and re-associates it with allow_reassociation), which covers both."""
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=allocation, InstanceId=instance)
    ec2.terminate_instances(InstanceIds=[instance])
    try:
        [address] = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"]
        assert address.get("InstanceId") == instance, "moto now disassociates on termination"
    finally:
        ec2.disassociate_address(AssociationId=address["AssociationId"])
        ec2.release_address(AllocationId=allocation)


def test_describe_tags_lists_tags_of_deleted_resources(ec2):
    """AWS forgets a resource's tags when it is deleted; moto's DescribeTags keeps listing
    them. The teardown test therefore asks each resource type (instances, volumes, addresses,
    security groups, IAM) rather than DescribeTags whether anything tagged is left."""
    group = ec2.create_security_group(
        GroupName="repro-deleted",
        Description="repro",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "Project", "Value": "repro"}]}],
    )["GroupId"]
    ec2.delete_security_group(GroupId=group)

    assert tags_of(ec2, group) == {"Project": ("repro", "security-group")}, "moto now forgets deleted tags"


def test_gp3_db_instance_has_no_storage_throughput(moto_server):
    """AWS describes a gp3 RDS instance with its StorageThroughput (125 MiB/s below 400 GiB) and
    Iops; moto leaves both out. amazon.aws.rds_instance reads ``instance["StorageThroughput"]``
    on every run against an existing gp3 instance and fails with KeyError on moto. ec2_provision
    therefore calls rds_instance only when the database is missing or differs from its variables
    (compared from rds_instance_info), so a run against moto that changes the database itself
    cannot be tested; creation, the unchanged second run and teardown are."""
    rds = moto_server.client("rds", region=REGION)
    rds.create_db_instance(
        DBInstanceIdentifier="repro-gp3",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        StorageType="gp3",
        MasterUsername="repro",
        MasterUserPassword="repro-password-1",
    )
    try:
        [instance] = rds.describe_db_instances(DBInstanceIdentifier="repro-gp3")["DBInstances"]
        assert instance["StorageType"] == "gp3"
        assert "StorageThroughput" not in instance, "moto now returns StorageThroughput for gp3"
    finally:
        rds.delete_db_instance(DBInstanceIdentifier="repro-gp3", SkipFinalSnapshot=True)


def test_cache_cluster_has_no_nodes_or_security_groups(moto_server):
    """AWS describes a Redis cache cluster (ShowCacheNodeInfo) with its CacheNodes, whose Endpoint
    is the address the app connects to, and its VPC SecurityGroups; moto returns neither.
    community.aws.elasticache reads CacheNodes[0] on every run against an existing Redis cluster
    and fails with KeyError on moto, and no endpoint could reach the app's secret. This is why
    ec2_provision does not create ElastiCache yet (issue 19): it could not be tested here."""
    elasticache = moto_server.client("elasticache", region=REGION)
    elasticache.create_cache_cluster(
        CacheClusterId="repro-redis", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1
    )
    try:
        [cluster] = elasticache.describe_cache_clusters(CacheClusterId="repro-redis", ShowCacheNodeInfo=True)[
            "CacheClusters"
        ]
        assert "CacheNodes" not in cluster, "moto now returns the cache nodes (and their endpoints)"
        assert "SecurityGroups" not in cluster, "moto now returns the VPC security groups"
    finally:
        elasticache.delete_cache_cluster(CacheClusterId="repro-redis")


def test_a_secret_scheduled_for_deletion_is_refused_with_another_message(moto_server):
    """AWS refuses GetSecretValue on a secret scheduled for deletion with "... because it was marked for
    deletion", which amazon.aws's secretsmanager_secret lookup matches for on_deleted=skip. moto says "...
    currently marked deleted", so on moto the lookup raises instead of skipping: ec2_provision's RDS task
    that reads its connection secret fails after a teardown on the same server (on AWS it skips, and
    community.aws.secretsmanager_secret restores the secret). The provisioning tests therefore start
    "from nothing" on a reset server."""
    import botocore.exceptions

    client = moto_server.client("secretsmanager", region=REGION)
    client.create_secret(Name="repro/deleted", SecretString="{}")
    client.delete_secret(SecretId="repro/deleted", RecoveryWindowInDays=7)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.get_secret_value(SecretId="repro/deleted")
    message = str(info.value)
    assert "marked deleted" in message, "moto's message changed"
    assert "marked for deletion" not in message, "moto now says what AWS says: on_deleted=skip works"
