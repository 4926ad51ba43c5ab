"""Make ``ansible_collections.ec2ops.stack`` importable under plain pytest.

``ansible-test units`` runs from an ``ansible_collections/ec2ops/stack`` tree where
the collection is already importable; plain ``pytest`` from the checkout uses the
``.collections`` link that ansible.cfg also uses.
"""

import importlib.util
import pathlib
import sys


def _importable():
    try:
        return importlib.util.find_spec("ansible_collections.ec2ops.stack") is not None
    except ModuleNotFoundError:
        return False


if not _importable():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / ".collections"))


def pytest_configure(config):
    config.addinivalue_line("markers", "secrets_dotenv: tests of the secrets_dotenv module utils (-k dotenv)")
