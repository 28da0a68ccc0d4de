"""A local three-node Redis Cluster shared by the contract tests of this folder (started once)."""

from __future__ import annotations

import pytest

from tests.rediscluster import LocalCluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    cluster = LocalCluster(str(tmp_path_factory.mktemp("redis-cluster"))).start()
    yield cluster
    cluster.stop()
